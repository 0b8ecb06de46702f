"""Shared fakes and helpers of the tests (a package, imported as ``tests.fakes.<module>``)."""
