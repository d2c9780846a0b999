//! QEMU glue: guest image build, tap attachment, QMP helpers and guest init for migration experiments.
