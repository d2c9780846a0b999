//! Topologies in network namespaces (the paper's Fig. 1a/1b, grids, trees), experiments and plots.
