"""Power states of instances and libvirt's names of domain states.

The numbers are nova.compute.power_state's (what ``instances.power_state``
holds); the names are libvirt's own (what virsh prints). Kept apart from
the driver so that code that only reports states (``nova-libvirt list``)
imports neither the driver nor the objects layer it needs.
"""

# nova.compute.power_state
NOSTATE = 0x00
RUNNING = 0x01
PAUSED = 0x03
SHUTDOWN = 0x04
CRASHED = 0x06
SUSPENDED = 0x07

POWER_STATE_NAMES = {
    NOSTATE: 'pending', RUNNING: 'running', PAUSED: 'paused',
    SHUTDOWN: 'shutdown', CRASHED: 'crashed', SUSPENDED: 'suspended',
}

# libvirt's VIR_DOMAIN_* state numbers -> power state
LIBVIRT_POWER_STATE = {
    0: NOSTATE,     # NOSTATE
    1: RUNNING,     # RUNNING
    2: RUNNING,     # BLOCKED: a running guest waiting on a resource
    3: PAUSED,      # PAUSED
    4: SHUTDOWN,    # SHUTDOWN: going down
    5: SHUTDOWN,    # SHUTOFF
    6: CRASHED,     # CRASHED
    7: SUSPENDED,   # PMSUSPENDED
}

# libvirt's VIR_DOMAIN_* state numbers -> libvirt's own names (virsh)
DOMAIN_STATE_NAMES = {
    0: 'nostate', 1: 'running', 2: 'blocked', 3: 'paused', 4: 'shutdown',
    5: 'shut off', 6: 'crashed', 7: 'pmsuspended',
}


def domain_state(host, instance):
    """libvirt's name of the state of ``instance``'s domain on ``host`` (a
    nova.virt.libvirt.host.Host), or None if it has no domain there.

    :raises: HypervisorUnavailable as Host.lookup_domain.
    """
    dom = host.lookup_domain(instance)
    if dom is None:
        return None
    state, _reason = dom.state()
    return DOMAIN_STATE_NAMES.get(state, 'unknown (%d)' % state)
