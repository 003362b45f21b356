package tftp

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
)

// fetch downloads name with pin's client (lock-step, acknowledging every block, like iPXE).
func fetch(b *testing.B, addr, name string, blksize int) {
	c, err := tftp.NewClient(addr)
	if err != nil {
		b.Fatal(err)
	}
	c.SetBlockSize(blksize)
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := wt.WriteTo(io.Discard); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTFTP measures loopback throughput of a 16 MiB file; the package comment records
// the results. "default" is DefaultConfig with the block size iPXE asks for.
func BenchmarkTFTP(b *testing.B) {
	const size = 16 << 20
	dir, _ := assets(b, map[string]int{"ipxe.efi": size})
	cases := []struct {
		name       string
		blksize    int // asked by the client
		maxBlock   int // 0: default
		anticipate uint
	}{
		{"default/blksize=1432", 1432, 0, 0},
		{"blksize=512", 512, 0, 0},
		{"blksize=1468", 1468, 0, 0},
		{"blksize=8192", 8192, 8192, 0},
		{"blksize=1432/anticipate=8", 1432, 0, 8},
		{"blksize=1432/anticipate=16", 1432, 0, 16},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Assets = dir
			if tc.maxBlock != 0 {
				cfg.MaxBlockSize = tc.maxBlock
			}
			cfg.Anticipate = tc.anticipate
			addr := start(b, cfg).String()
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				fetch(b, addr, "ipxe.efi", tc.blksize)
			}
		})
	}
}

// BenchmarkRetransmit measures what the retransmission timeout costs on a lossy link: 1 MiB
// through a relay that drops 2% of the data datagrams. pin's client keeps its 5 s timeout,
// so recovery is driven by the server, as with iPXE. Each lost block costs a full timeout:
// run with -benchtime 1x.
func BenchmarkRetransmit(b *testing.B) {
	const size = 1 << 20
	dir, _ := assets(b, map[string]int{"ipxe.efi": size})
	b.Run("pin-defaults", func(b *testing.B) {
		// pin's own defaults: 5 s timeout, random 0-1 s backoff before each retransmission.
		srv := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
			f, err := os.Open(filepath.Join(dir, "ipxe.efi"))
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = rf.ReadFrom(f)
			return err
		}, nil)
		srv.SetBlockSize(1468)
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		go srv.Serve(conn)
		defer srv.Shutdown()
		waitReady(b, conn.LocalAddr().(*net.UDPAddr))
		lossy(b, conn.LocalAddr().(*net.UDPAddr), size)
	})
	for _, timeout := range []time.Duration{time.Second, 500 * time.Millisecond} {
		b.Run("timeout="+timeout.String(), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Assets = dir
			cfg.Timeout = timeout
			lossy(b, start(b, cfg), size)
		})
	}
}

func lossy(b *testing.B, server *net.UDPAddr, size int64) {
	r := newRelay(b, server, 0.02)
	defer r.close()
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		fetch(b, r.front.LocalAddr().String(), "ipxe.efi", 1432)
	}
	b.ReportMetric(float64(r.dropped())/float64(b.N), "drops/op")
}

// relay forwards one TFTP transfer at a time between a client (talking to front) and a
// server (talked to from back), dropping server DATA datagrams at random with a fixed seed.
type relay struct {
	front, back *net.UDPConn
	server      *net.UDPAddr
	loss        float64
	wg          sync.WaitGroup

	mu     sync.Mutex
	client *net.UDPAddr // last client address seen
	tid    *net.UDPAddr // the server's transfer port
	rng    *rand.Rand
	ndrop  int
}

func newRelay(b *testing.B, server *net.UDPAddr, loss float64) *relay {
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	front, err := net.ListenUDP("udp", lo)
	if err != nil {
		b.Fatal(err)
	}
	back, err := net.ListenUDP("udp", lo)
	if err != nil {
		b.Fatal(err)
	}
	r := &relay{front: front, back: back, server: server, loss: loss, rng: rand.New(rand.NewPCG(7, 7))}
	r.wg.Add(2)
	go r.toServer()
	go r.toClient()
	return r
}

func (r *relay) toServer() {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := r.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.client = from
		to := r.tid
		if binary.BigEndian.Uint16(buf) == 1 { // a new read request goes to the listening port
			to, r.tid = r.server, nil
		}
		r.mu.Unlock()
		if to != nil {
			r.back.WriteToUDP(buf[:n], to)
		}
	}
}

func (r *relay) toClient() {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := r.back.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.tid = from
		to := r.client
		drop := binary.BigEndian.Uint16(buf) == 3 && r.rng.Float64() < r.loss
		if drop {
			r.ndrop++
		}
		r.mu.Unlock()
		if !drop && to != nil {
			r.front.WriteToUDP(buf[:n], to)
		}
	}
}

func (r *relay) dropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ndrop
}

func (r *relay) close() {
	r.front.Close()
	r.back.Close()
	r.wg.Wait()
}
