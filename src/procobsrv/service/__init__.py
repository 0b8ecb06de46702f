"""``procobsrv serve``: the one kernel subscription of a host, served to local users' programs
over a Unix socket (``server``), each seeing what ``rule`` allows, in the ``wire`` format.

Nothing is imported here: the client side (``procobsrv.linux.service_source``) imports
``wire`` alone, without the server and the scope it runs.
"""
