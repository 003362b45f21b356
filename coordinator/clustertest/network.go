package clustertest

import (
	"context"
	"errors"
	"net"
	"sync"
)

// errPartitioned is what a dial or I/O across a partition returns.
var errPartitioned = errors.New("clustertest: network partitioned")

// Network connects replicas through dialers that can be cut: each replica dials its peers
// through its own dialer, which knows who is dialling and refuses (or breaks) connections
// across a partition.
type Network struct {
	mu     sync.Mutex
	byAddr map[string]int // raft address -> replica index
	group  map[int]int    // replica index -> partition group (absent: isolated when cut)
	cut    bool
	conns  map[*faultConn]struct{}
}

func newNetwork() *Network {
	return &Network{byAddr: map[string]int{}, conns: map[*faultConn]struct{}{}}
}

func (n *Network) register(index int, raftAddr string) {
	n.mu.Lock()
	n.byAddr[raftAddr] = index
	n.mu.Unlock()
}

func (n *Network) blocked(from, to int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.blockedLocked(from, to)
}

func (n *Network) blockedLocked(from, to int) bool {
	if !n.cut || from == to {
		return false
	}
	gf, okf := n.group[from]
	gt, okt := n.group[to]
	return !okf || !okt || gf != gt
}

func (n *Network) partition(groups [][]int) {
	n.mu.Lock()
	n.cut = true
	n.group = map[int]int{}
	for g, members := range groups {
		for _, i := range members {
			n.group[i] = g
		}
	}
	var doomed []*faultConn
	for c := range n.conns {
		if n.blockedLocked(c.from, c.to) {
			doomed = append(doomed, c)
		}
	}
	n.mu.Unlock()
	for _, c := range doomed {
		c.Conn.Close()
	}
}

func (n *Network) heal() {
	n.mu.Lock()
	n.cut = false
	n.mu.Unlock()
}

type dialer struct {
	n    *Network
	from int
}

func (n *Network) dialer(from int) *dialer { return &dialer{n: n, from: from} }

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.n.mu.Lock()
	to, known := d.n.byAddr[addr]
	d.n.mu.Unlock()
	if known && d.n.blocked(d.from, to) {
		return nil, errPartitioned
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil || !known {
		return c, err
	}
	fc := &faultConn{Conn: c, n: d.n, from: d.from, to: to}
	d.n.mu.Lock()
	d.n.conns[fc] = struct{}{}
	d.n.mu.Unlock()
	return fc, nil
}

// faultConn fails every read and write across a partition.
type faultConn struct {
	net.Conn
	n        *Network
	from, to int
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.n.blocked(c.from, c.to) {
		c.Conn.Close()
		return 0, errPartitioned
	}
	return c.Conn.Read(p)
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.n.blocked(c.from, c.to) {
		c.Conn.Close()
		return 0, errPartitioned
	}
	return c.Conn.Write(p)
}

func (c *faultConn) Close() error {
	c.n.mu.Lock()
	delete(c.n.conns, c)
	c.n.mu.Unlock()
	return c.Conn.Close()
}
