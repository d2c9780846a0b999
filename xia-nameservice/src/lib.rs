//! XIA name service: a DGRAM service at SID_NS mapping names to DAGs, with its daemon, client and CLI.
