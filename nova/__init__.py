"""Nova's libvirt local disks, rebuilt around a persisted layout record."""
