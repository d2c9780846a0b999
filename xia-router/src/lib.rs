//! XIA router daemon: per-principal forwarding with fallback, AD beacons, inter-AD routing, authenticated HID route patching and an on-path chunk cache.
