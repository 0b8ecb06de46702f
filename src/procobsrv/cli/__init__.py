"""The console tool (the article's ConsCtl): ``procobsrv watch|demo|driver``."""
