"""What the tests share and is not a fixture: fakes of the kernel side (a replayed connector,
eBPF records, a scripted source, a simulated Windows), a recording handler, probes (fds,
threads, memory), real helpers run by several tests (a process storm, NATS servers, the agent
as a subprocess, the driver built by its makefile) and the skip-or-fail policy. Test modules
import from here, never from one another; fixtures live in the conftest.py files."""
