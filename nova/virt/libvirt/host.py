"""The connection to libvirt: opened on first use, reopened if it dies.

``Host(uri)`` wraps one ``virConnect`` to ``[libvirt] connection_uri``
(embedded default ``test:///default``, libvirt's in-process test driver;
``qemu:///system`` for real guests). It knows how to find an instance's
domain and which domain type to write; it knows nothing about disks.

libvirt's C library prints every error on stderr unless a handler is
registered; this module registers one (logging at debug level: the caller
gets the same error as an exception) before the first connection.
"""

import threading

import libvirt
from oslo_log import log as logging

import nova.conf
from nova import exception

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

_HANDLER_LOCK = threading.Lock()
_HANDLER_REGISTERED = False


def _log_libvirt_error(_ctx, error):
    # error: (code, domain, message, level, str1, str2, str3, int1, int2)
    LOG.debug('libvirt error %(code)s: %(message)s',
              {'code': error[0], 'message': error[2]})


def register_error_handler():
    """Route libvirt's own error printing to our debug log (once)."""
    global _HANDLER_REGISTERED
    with _HANDLER_LOCK:
        if not _HANDLER_REGISTERED:
            libvirt.registerErrorHandler(_log_libvirt_error, None)
            _HANDLER_REGISTERED = True


def domain_name(instance):
    """The libvirt domain name of an instance: ``instance-<uuid>``."""
    return 'instance-%s' % instance.uuid


def is_error(e, *codes):
    """True if the libvirtError ``e`` has one of the VIR_ERR_* ``codes``."""
    return e.get_error_code() in codes


class Host:
    """One libvirt connection.

    :param uri: the connection URI (default ``[libvirt] connection_uri``,
        read when the connection is opened).
    """

    def __init__(self, uri=None):
        self._uri = uri
        self._conn = None
        self._lock = threading.Lock()

    @property
    def uri(self):
        return self._uri or CONF.libvirt.connection_uri

    @property
    def is_test_driver(self):
        """True for libvirt's in-process test driver (``test://...``)."""
        return self.uri.startswith('test:')

    @property
    def domain_type(self):
        """The ``<domain type>`` to write: 'test' for the test driver,
        else ``[libvirt] virt_type`` (kvm, qemu, ...)."""
        return 'test' if self.is_test_driver else CONF.libvirt.virt_type

    def get_connection(self):
        """The open ``virConnect``, opened (again) if needed.

        :raises: HypervisorUnavailable naming the URI and libvirt's error.
        """
        with self._lock:
            conn = self._conn
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                LOG.warning('Connection to %(uri)s was lost; reopening',
                            {'uri': self.uri})
                self._conn = None
            register_error_handler()
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as e:
                raise exception.HypervisorUnavailable(
                    reason='cannot open %s: %s' % (self.uri, e)) from e
            LOG.debug('Connected to %(uri)s', {'uri': self.uri})
            return self._conn

    def close(self):
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError as e:
                LOG.debug('Closing %(uri)s: %(error)s',
                          {'uri': self.uri, 'error': e})

    def lookup_domain(self, instance):
        """The instance's domain (found by its uuid), or None if undefined.

        :raises: HypervisorUnavailable for any other libvirt error.
        """
        try:
            return self.get_connection().lookupByUUIDString(instance.uuid)
        except libvirt.libvirtError as e:
            if is_error(e, libvirt.VIR_ERR_NO_DOMAIN):
                return None
            raise exception.HypervisorUnavailable(
                reason='looking up the domain of instance %s: %s' % (
                    instance.uuid, e)) from e

    def define_domain(self, xml):
        """Define (or redefine) a persistent domain from ``xml``.

        :returns: the virDomain.
        :raises: libvirt.libvirtError.
        """
        return self.get_connection().defineXML(xml)
