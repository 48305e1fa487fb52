"""Guest XML: the domain and its disk elements.

Disk elements are built by each imagebackend's ``libvirt_info()`` from the
disk's record; the domain is assembled by the driver. Nothing here reads
configuration or looks at a disk: callers say what to write.

Example: a qcow2 overlay on a raw base::

    disk = LibvirtConfigGuestDisk(
        source_type='file', source_path='/var/lib/nova/instances/U/disk',
        driver_format='qcow2', target_dev='vda', target_bus='virtio',
        backing_store=[BackingStore('/var/lib/nova/instances/_base/X',
                                    'raw')])
    disk.to_xml()
"""

import dataclasses
from xml.etree import ElementTree as etree


@dataclasses.dataclass
class BackingStore:
    """One layer under a disk: its file and its (recorded) format."""

    path: str
    format: str


@dataclasses.dataclass
class LibvirtConfigGuestDisk:
    """A ``<disk>`` element.

    ``source_type`` is ``file`` (``source_path`` is a file), ``block``
    (``source_path`` is a device) or ``network`` (``source_protocol`` such
    as ``rbd``, ``source_name`` such as ``pool/image``, ``source_hosts`` and
    ``source_ports`` of the monitors, and cephx ``auth_*``).
    ``driver_format`` is the recorded format: libvirt and QEMU open the disk
    with exactly it. ``backing_store`` lists the layers below, top first;
    for a file with no backing it is empty and an empty ``<backingStore/>``
    tells libvirt not to probe for one.

    ``driver_name`` (``qemu``, or None for the hypervisor's choice),
    ``driver_cache``, ``driver_io``, ``driver_discard``, ``iotune``
    (``{'read_bytes_sec': '1024', ...}``) and ``scsi_unit`` (a unit on
    SCSI controller 0, or None) say how it is attached: see disk_tuning.
    """

    source_type: str
    target_dev: str
    driver_format: str
    target_bus: str = 'virtio'
    source_device: str = 'disk'
    source_path: str = None
    source_protocol: str = None
    source_name: str = None
    source_hosts: list = dataclasses.field(default_factory=list)
    source_ports: list = dataclasses.field(default_factory=list)
    driver_name: str = 'qemu'
    driver_cache: str = 'none'
    driver_discard: str = None
    driver_io: str = None
    auth_username: str = None
    auth_secret_type: str = None
    auth_secret_uuid: str = None
    backing_store: list = dataclasses.field(default_factory=list)
    readonly: bool = False
    serial: str = None
    iotune: dict = dataclasses.field(default_factory=dict)
    scsi_unit: int = None
    #: Per-device boot order (a rescue disk boots first); None: none.
    boot_order: int = None

    def to_element(self):
        disk = etree.Element('disk', type=self.source_type,
                             device=self.source_device)
        driver = etree.SubElement(disk, 'driver')
        if self.driver_name:
            driver.set('name', self.driver_name)
        driver.set('type', self.driver_format)
        if self.driver_cache:
            driver.set('cache', self.driver_cache)
        if self.driver_discard:
            driver.set('discard', self.driver_discard)
        if self.driver_io:
            driver.set('io', self.driver_io)
        if self.source_type == 'file':
            etree.SubElement(disk, 'source', file=self.source_path)
        elif self.source_type == 'block':
            etree.SubElement(disk, 'source', dev=self.source_path)
        elif self.source_type == 'network':
            source = etree.SubElement(disk, 'source',
                                      protocol=self.source_protocol,
                                      name=self.source_name)
            for host, port in zip(self.source_hosts, self.source_ports):
                etree.SubElement(source, 'host', name=host, port=str(port))
        else:
            raise ValueError('unknown disk source type %r' %
                             self.source_type)
        if self.auth_username:
            auth = etree.SubElement(disk, 'auth',
                                    username=self.auth_username)
            etree.SubElement(auth, 'secret', type=self.auth_secret_type,
                             uuid=self.auth_secret_uuid)
        if self.source_type in ('file', 'block'):
            parent = disk
            for layer in self.backing_store:
                store = etree.SubElement(parent, 'backingStore',
                                         type='file')
                etree.SubElement(store, 'format', type=layer.format)
                etree.SubElement(store, 'source', file=layer.path)
                parent = store
            # An empty element closes the chain: libvirt probes nothing.
            etree.SubElement(parent, 'backingStore')
        etree.SubElement(disk, 'target', dev=self.target_dev,
                         bus=self.target_bus)
        if self.boot_order is not None:
            etree.SubElement(disk, 'boot', order=str(self.boot_order))
        if self.serial:
            etree.SubElement(disk, 'serial').text = self.serial
        if self.iotune:
            iotune = etree.SubElement(disk, 'iotune')
            for name, value in self.iotune.items():
                etree.SubElement(iotune, name).text = str(value)
        if self.readonly:
            etree.SubElement(disk, 'readonly')
        if self.scsi_unit is not None:
            # Controller 0 is the one the guest's SCSI disks share.
            etree.SubElement(disk, 'address', type='drive', controller='0',
                             unit=str(self.scsi_unit))
        return disk

    def to_xml(self):
        return etree.tostring(self.to_element(), encoding='unicode')


@dataclasses.dataclass
class LibvirtConfigGuest:
    """A ``<domain>``: the few parts this project's guests need.

    ``virt_type`` is libvirt's domain type (``kvm``, ``qemu`` or, for the
    test driver, ``test``); ``memory_mb`` and ``vcpus`` size the guest;
    ``disks`` are LibvirtConfigGuestDisk elements in target order.
    """

    name: str
    uuid: str
    virt_type: str = 'kvm'
    memory_mb: int = 64
    vcpus: int = 1
    os_type: str = 'hvm'
    arch: str = 'x86_64'
    emulator: str = None
    disks: list = dataclasses.field(default_factory=list)

    def to_element(self):
        domain = etree.Element('domain', type=self.virt_type)
        etree.SubElement(domain, 'name').text = self.name
        etree.SubElement(domain, 'uuid').text = self.uuid
        etree.SubElement(domain, 'memory', unit='MiB').text = str(
            self.memory_mb)
        etree.SubElement(domain, 'vcpu').text = str(self.vcpus)
        os_el = etree.SubElement(domain, 'os')
        etree.SubElement(os_el, 'type', arch=self.arch).text = self.os_type
        if all(disk.boot_order is None for disk in self.disks):
            # libvirt refuses <os><boot> beside per-device boot orders.
            etree.SubElement(os_el, 'boot', dev='hd')
        features = etree.SubElement(domain, 'features')
        etree.SubElement(features, 'acpi')
        devices = etree.SubElement(domain, 'devices')
        if self.emulator:
            etree.SubElement(devices, 'emulator').text = self.emulator
        for disk in self.disks:
            devices.append(disk.to_element())
        return domain

    def to_xml(self):
        element = self.to_element()
        etree.indent(element)
        return etree.tostring(element, encoding='unicode')
