//! Max-flow / min-cut on sparse graphs by the Boykov-Kolmogorov algorithm (Boykov & Kolmogorov,
//! "An Experimental Comparison of Min-Cut/Max-Flow Algorithms for Energy Minimization in Vision",
//! PAMI 2004): two search trees grown from the terminals, augmentation along the path where they
//! meet, and adoption of the orphans. Suited to image grids, where it beats push-relabel.
//!
//! The bookkeeping follows OpenCV's `GCGraph` (`modules/imgproc/src/gcgraph.hpp`), the solver its
//! `grabCut` uses, so that ties between equal cuts mostly fall the same way.

/// No edge / no parent; edges 0 and 1 are placeholders so that 0 can mean "none".
const NONE: usize = 0;
/// Parent marks that are not edges.
const TERMINAL: isize = -1;
const ORPHAN: isize = -2;
/// `next` of a node not in the active queue.
const NOT_QUEUED: usize = usize::MAX;

#[derive(Clone, Debug)]
struct Node {
    /// First outgoing edge (an index into `edges`), `NONE` at the end of the list.
    first: usize,
    /// Next node in the active queue, `NOT_QUEUED` when out of it.
    next: usize,
    /// Edge to the parent (`> 0`), `TERMINAL`, `ORPHAN`, or 0 when free.
    parent: isize,
    /// Time stamp and distance to the terminal, for the adoption heuristics.
    ts: u64,
    dist: u32,
    /// Residual terminal capacity: source minus sink.
    weight: f64,
    /// Tree: 0 source, 1 sink.
    tree: u8,
}

#[derive(Clone, Debug)]
struct Edge {
    dst: usize,
    next: usize,
    weight: f64,
}

/// A flow network with a source and a sink; nodes are added in order, `0..n`.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    /// Flow already pushed through terminal pairs (`min(source, sink)` of each node).
    flow: f64,
}

impl Graph {
    /// An empty graph with room for `nodes` nodes and `edges` edge pairs.
    pub fn with_capacity(nodes: usize, edges: usize) -> Self {
        let mut graph = Graph {
            nodes: Vec::with_capacity(nodes + 1),
            edges: Vec::with_capacity(2 * edges + 2),
            flow: 0.0,
        };
        graph.edges.extend((0..2).map(|_| Edge {
            dst: 0,
            next: NONE,
            weight: 0.0,
        }));
        graph
    }

    /// Adds a node and returns its index.
    pub fn add_node(&mut self) -> usize {
        self.nodes.push(Node {
            first: NONE,
            next: NOT_QUEUED,
            parent: 0,
            ts: 0,
            dist: 0,
            weight: 0.0,
            tree: 0,
        });
        self.nodes.len() - 1
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Adds capacities from the source to `node` and from `node` to the sink; only their
    /// difference stays in the network, the common part is flow already.
    pub fn add_terminal_weights(&mut self, node: usize, source: f64, sink: f64) {
        let node = &mut self.nodes[node];
        let (mut source, mut sink) = (source, sink);
        let residual = node.weight;
        if residual > 0.0 {
            source += residual;
        } else {
            sink -= residual;
        }
        self.flow += source.min(sink);
        node.weight = source - sink;
    }

    /// Adds the edge `a -> b` with capacity `forward` and `b -> a` with `backward`.
    pub fn add_edge(&mut self, a: usize, b: usize, forward: f64, backward: f64) {
        let index = self.edges.len();
        self.edges.push(Edge {
            dst: b,
            next: self.nodes[a].first,
            weight: forward,
        });
        self.nodes[a].first = index;
        self.edges.push(Edge {
            dst: a,
            next: self.nodes[b].first,
            weight: backward,
        });
        self.nodes[b].first = index + 1;
    }

    /// Whether `node` ended on the source side of the minimum cut (after [`Graph::max_flow`]):
    /// everything the sink tree does not hold. OpenCV's `GCGraph::inSourceSegment` reads the tree
    /// mark alone, which a node freed from the sink tree keeps, and then the cut it reports can
    /// cost more than the flow; here free nodes all go to the source, which always gives a
    /// minimum cut and agrees with OpenCV for the nodes no tree ever reached.
    pub fn in_source_segment(&self, node: usize) -> bool {
        let node = &self.nodes[node];
        node.parent == 0 || node.tree == 0
    }

    /// Pushes the maximum flow and returns its value.
    pub fn max_flow(&mut self) -> f64 {
        let n = self.nodes.len();
        if n == 0 {
            return self.flow;
        }
        // The queue is a linked list through `next`; index `n` is its sentinel.
        let sentinel = n;
        self.nodes.push(Node {
            first: NONE,
            next: sentinel,
            parent: 0,
            ts: 0,
            dist: 0,
            weight: 0.0,
            tree: 0,
        });
        let mut queue = Queue {
            first: sentinel,
            last: sentinel,
            sentinel,
        };
        for v in 0..n {
            let node = &mut self.nodes[v];
            node.ts = 0;
            if node.weight != 0.0 {
                node.dist = 1;
                node.parent = TERMINAL;
                node.tree = u8::from(node.weight < 0.0);
                queue.push(&mut self.nodes, v);
            } else {
                node.parent = 0;
            }
        }
        let mut orphans: Vec<usize> = Vec::new();
        let mut time: u64 = 0;
        while let Some(bridge) = self.grow(&mut queue) {
            self.augment(bridge, &mut orphans);
            time += 1;
            self.adopt(&mut orphans, &mut queue, time);
        }
        self.nodes.truncate(n);
        self.flow
    }

    /// Grows the trees from the active nodes until an edge joins them; returns that edge,
    /// oriented from the source tree to the sink tree.
    fn grow(&mut self, queue: &mut Queue) -> Option<usize> {
        while queue.first != queue.sentinel {
            let v = queue.first;
            if self.nodes[v].parent != 0 {
                let tree = self.nodes[v].tree as usize;
                let mut e = self.nodes[v].first;
                while e != NONE {
                    if self.edges[e ^ tree].weight != 0.0 {
                        let u = self.edges[e].dst;
                        if self.nodes[u].parent == 0 {
                            let (ts, dist) = (self.nodes[v].ts, self.nodes[v].dist);
                            let node = &mut self.nodes[u];
                            node.tree = tree as u8;
                            node.parent = (e ^ 1) as isize;
                            node.ts = ts;
                            node.dist = dist + 1;
                            if node.next == NOT_QUEUED {
                                queue.push(&mut self.nodes, u);
                            }
                        } else if self.nodes[u].tree as usize != tree {
                            return Some(e ^ tree);
                        } else if self.nodes[u].dist > self.nodes[v].dist + 1
                            && self.nodes[u].ts <= self.nodes[v].ts
                        {
                            let (ts, dist) = (self.nodes[v].ts, self.nodes[v].dist);
                            let node = &mut self.nodes[u];
                            node.parent = (e ^ 1) as isize;
                            node.ts = ts;
                            node.dist = dist + 1;
                        }
                    }
                    e = self.edges[e].next;
                }
            }
            queue.first = self.nodes[v].next;
            self.nodes[v].next = NOT_QUEUED;
        }
        None
    }

    /// Pushes the bottleneck capacity along the path through `bridge`; saturated tree edges and
    /// emptied terminal links make orphans.
    fn augment(&mut self, bridge: usize, orphans: &mut Vec<usize>) {
        let mut bottleneck = self.edges[bridge].weight;
        // side 1: the path back to the source; side 0: the path on to the sink.
        for side in [1usize, 0] {
            let mut v = self.edges[bridge ^ side].dst;
            while let Ok(e) = usize::try_from(self.nodes[v].parent) {
                bottleneck = bottleneck.min(self.edges[e ^ side].weight);
                v = self.edges[e].dst;
            }
            bottleneck = bottleneck.min(self.nodes[v].weight.abs());
        }
        self.edges[bridge].weight -= bottleneck;
        self.edges[bridge ^ 1].weight += bottleneck;
        self.flow += bottleneck;
        for side in [1usize, 0] {
            let mut v = self.edges[bridge ^ side].dst;
            while let Ok(e) = usize::try_from(self.nodes[v].parent) {
                self.edges[e ^ (side ^ 1)].weight += bottleneck;
                self.edges[e ^ side].weight -= bottleneck;
                if self.edges[e ^ side].weight == 0.0 {
                    orphans.push(v);
                    self.nodes[v].parent = ORPHAN;
                }
                v = self.edges[e].dst;
            }
            let sign = if side == 1 { -1.0 } else { 1.0 };
            self.nodes[v].weight += bottleneck * sign;
            if self.nodes[v].weight == 0.0 {
                orphans.push(v);
                self.nodes[v].parent = ORPHAN;
            }
        }
    }

    /// Finds new parents for the orphans, or frees them (and orphans their children).
    fn adopt(&mut self, orphans: &mut Vec<usize>, queue: &mut Queue, time: u64) {
        while let Some(v) = orphans.pop() {
            let tree = self.nodes[v].tree as usize;
            let mut best_edge = NONE;
            let mut best_dist = u32::MAX;
            let mut e = self.nodes[v].first;
            while e != NONE {
                let candidate = e;
                e = self.edges[e].next;
                if self.edges[candidate ^ (tree ^ 1)].weight == 0.0 {
                    continue;
                }
                let start = self.edges[candidate].dst;
                if self.nodes[start].tree as usize != tree || self.nodes[start].parent == 0 {
                    continue;
                }
                let Some(dist) = self.distance_to_root(start, time) else {
                    continue;
                };
                let mut d = dist + 1;
                if d < best_dist {
                    best_dist = d;
                    best_edge = candidate;
                }
                // Stamp the path so later searches stop early.
                let mut u = start;
                while self.nodes[u].ts != time {
                    self.nodes[u].ts = time;
                    d -= 1;
                    self.nodes[u].dist = d;
                    let parent = self.nodes[u].parent as usize;
                    u = self.edges[parent].dst;
                }
            }
            if best_edge != NONE {
                let node = &mut self.nodes[v];
                node.parent = best_edge as isize;
                node.ts = time;
                node.dist = best_dist;
                continue;
            }
            self.nodes[v].parent = 0;
            self.nodes[v].ts = 0;
            let mut e = self.nodes[v].first;
            while e != NONE {
                let u = self.edges[e].dst;
                let parent = self.nodes[u].parent;
                if self.nodes[u].tree as usize == tree && parent != 0 {
                    if self.edges[e ^ (tree ^ 1)].weight != 0.0 && self.nodes[u].next == NOT_QUEUED
                    {
                        queue.push(&mut self.nodes, u);
                    }
                    if parent > 0 && self.edges[parent as usize].dst == v {
                        orphans.push(u);
                        self.nodes[u].parent = ORPHAN;
                    }
                }
                e = self.edges[e].next;
            }
        }
    }

    /// Distance from `u` to its tree's terminal, or `None` when the path meets an orphan. Nodes
    /// stamped with `time` already know theirs.
    fn distance_to_root(&mut self, start: usize, time: u64) -> Option<u32> {
        let mut u = start;
        let mut d: u32 = 0;
        loop {
            if self.nodes[u].ts == time {
                return Some(d + self.nodes[u].dist);
            }
            let parent = self.nodes[u].parent;
            d += 1;
            if parent < 0 {
                if parent == ORPHAN {
                    return None;
                }
                self.nodes[u].ts = time;
                self.nodes[u].dist = 1;
                return Some(d);
            }
            u = self.edges[parent as usize].dst;
        }
    }
}

/// The active nodes, a FIFO linked through `Node::next`.
struct Queue {
    first: usize,
    last: usize,
    sentinel: usize,
}

impl Queue {
    fn push(&mut self, nodes: &mut [Node], v: usize) {
        nodes[v].next = self.sentinel;
        if self.first == self.sentinel {
            self.first = v;
        } else {
            nodes[self.last].next = v;
        }
        self.last = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A random graph: terminal capacities and edges, as lists for the brute force.
    struct Case {
        n: usize,
        terminals: Vec<(f64, f64)>,
        edges: Vec<(usize, usize, f64, f64)>,
    }

    fn random_case(rng: &mut Rng, n: usize, integral: bool) -> Case {
        let cap = |rng: &mut Rng, zero_share: f64| {
            if rng.chance(zero_share) {
                0.0
            } else if integral {
                (1 + rng.below(9)) as f64
            } else {
                rng.range(0.01, 5.0)
            }
        };
        let terminals = (0..n).map(|_| (cap(rng, 0.4), cap(rng, 0.4))).collect();
        let mut edges = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                if rng.chance(0.5) {
                    edges.push((a, b, cap(rng, 0.2), cap(rng, 0.2)));
                }
            }
        }
        Case {
            n,
            terminals,
            edges,
        }
    }

    /// Capacity of the cut where `source_side` bit i says node i is with the source.
    fn cut_value(case: &Case, source_side: u32) -> f64 {
        let with_source = |i: usize| source_side >> i & 1 == 1;
        let mut value = 0.0;
        for (i, &(source, sink)) in case.terminals.iter().enumerate() {
            value += if with_source(i) { sink } else { source };
        }
        for &(a, b, forward, backward) in &case.edges {
            if with_source(a) && !with_source(b) {
                value += forward;
            } else if with_source(b) && !with_source(a) {
                value += backward;
            }
        }
        value
    }

    fn solve(case: &Case) -> (f64, Graph) {
        let mut graph = Graph::with_capacity(case.n, case.edges.len());
        for &(source, sink) in &case.terminals {
            let node = graph.add_node();
            graph.add_terminal_weights(node, source, sink);
        }
        for &(a, b, forward, backward) in &case.edges {
            graph.add_edge(a, b, forward, backward);
        }
        (graph.max_flow(), graph)
    }

    #[test]
    fn max_flow_equals_the_brute_force_min_cut() {
        let mut rng = Rng::new(2004);
        for trial in 0..300 {
            let n = 1 + trial % 10;
            let case = random_case(&mut rng, n, trial % 2 == 0);
            let brute = (0..1u32 << n)
                .map(|side| cut_value(&case, side))
                .fold(f64::INFINITY, f64::min);
            let (flow, graph) = solve(&case);
            assert!(
                (flow - brute).abs() <= 1e-9 * brute.max(1.0),
                "trial {trial}: flow {flow} min cut {brute}"
            );
            // The cut the solver reports is a minimum cut.
            let side = (0..n)
                .filter(|&i| graph.in_source_segment(i))
                .fold(0u32, |acc, i| acc | 1 << i);
            let reported = cut_value(&case, side);
            assert!(
                (reported - brute).abs() <= 1e-9 * brute.max(1.0),
                "trial {trial}: reported cut {reported} min cut {brute}"
            );
        }
    }

    #[test]
    fn a_chain_cuts_at_its_weakest_link() {
        let mut graph = Graph::with_capacity(4, 3);
        for _ in 0..4 {
            graph.add_node();
        }
        graph.add_terminal_weights(0, 10.0, 0.0);
        graph.add_terminal_weights(3, 0.0, 10.0);
        graph.add_edge(0, 1, 5.0, 5.0);
        graph.add_edge(1, 2, 2.0, 2.0);
        graph.add_edge(2, 3, 7.0, 7.0);
        assert_eq!(graph.max_flow(), 2.0);
        let sides: Vec<bool> = (0..4).map(|i| graph.in_source_segment(i)).collect();
        assert_eq!(sides, [true, true, false, false]);
    }

    #[test]
    fn an_empty_graph_has_no_flow() {
        assert_eq!(Graph::with_capacity(0, 0).max_flow(), 0.0);
    }
}
