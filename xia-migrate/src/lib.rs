//! xmigrate: carries QEMU exec-mode live migration as CHUNK transfers under a STREAM control protocol (send | recv | migrate).
