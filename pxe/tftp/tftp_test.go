package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/deployme/deployme/internal/poll"
)

// transfer is one OnTransfer call.
type transfer struct {
	Remote netip.AddrPort
	File   string
	Bytes  int64
	Err    error
}

// recorder collects OnTransfer calls; they come from transfer goroutines.
type recorder struct {
	mu  sync.Mutex
	got []transfer
}

func (r *recorder) on(remote netip.AddrPort, file string, n int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, transfer{remote, file, n, err})
}

func (r *recorder) all() []transfer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]transfer(nil), r.got...)
}

// wait polls until n transfers were reported.
func (r *recorder) wait(t testing.TB, n int) []transfer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll.Until(ctx, 5*time.Millisecond, func() (bool, error) { return len(r.all()) >= n, nil }); err != nil {
		t.Fatalf("waiting for %d transfers, have %d: %v", n, len(r.all()), err)
	}
	return r.all()
}

// start serves cfg on 127.0.0.1 and stops it when the test ends, checking Serve's result.
func start(t testing.TB, cfg Config) *net.UDPAddr {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after cancellation, want nil", err)
		}
	})
	addr := conn.LocalAddr().(*net.UDPAddr)
	waitReady(t, addr)
	return addr
}

// waitReady returns once the server answers a write request (refused without reaching the
// read handler, so no transfer is reported). Requests queued before pin's Serve enables
// IP_PKTINFO on the socket carry no interface index, and pin then caps their blksize at
// 512: tests and benchmarks must not race the start.
func waitReady(t testing.TB, server *net.UDPAddr) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wrq := append(binary.BigEndian.AppendUint16(nil, 2), "probe\x00octet\x00"...)
	if _, err := c.WriteToUDP(wrq, server); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadFromUDP(make([]byte, 1024)); err != nil {
		t.Fatalf("server not answering: %v", err)
	}
}

// assets creates an assets directory with the default files, each holding random bytes of
// the given sizes, and a sibling directory with a secret no request may read.
func assets(t testing.TB, sizes map[string]int) (dir, secret string) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "assets")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{dir, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for name, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	secret = filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("TOP-SECRET-CONTENT"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, secret
}

func testConfig(dir string, rec *recorder) Config {
	cfg := DefaultConfig()
	cfg.Assets = dir
	cfg.OnTransfer = rec.on
	return cfg
}

func TestRoundTrip(t *testing.T) {
	sizes := map[string]int{"undionly.kpxe": 74213, "ipxe.efi": 3 * 1432, "snponly.efi": 0}
	dir, _ := assets(t, sizes)
	rec := &recorder{}
	addr := start(t, testConfig(dir, rec))

	for i, name := range []string{"undionly.kpxe", "/ipxe.efi", "snponly.efi"} {
		t.Run(name, func(t *testing.T) {
			c, err := tftp.NewClient(addr.String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetBlockSize(1432) // what iPXE negotiates
			c.RequestTSize(true)
			wt, err := c.Receive(name, "octet")
			if err != nil {
				t.Fatalf("Receive: %v", err)
			}
			rel := strings.TrimPrefix(name, "/")
			want, _ := os.ReadFile(filepath.Join(dir, rel))
			// pin/tftp drops a tsize of 0 from its OACK, so an empty file announces none.
			if n, ok := wt.(tftp.IncomingTransfer).Size(); ok != (len(want) > 0) || n != int64(len(want)) {
				t.Errorf("tsize = %d, %v; want %d, %v", n, ok, len(want), len(want) > 0)
			}
			var got bytes.Buffer
			if _, err := wt.WriteTo(&got); err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("content differs: got %d bytes, want %d", got.Len(), len(want))
			}
			tr := rec.wait(t, i+1)[i]
			if tr.File != rel || tr.Bytes != int64(len(want)) || tr.Err != nil || tr.Remote.Addr() != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("OnTransfer got %+v, want file %q, %d bytes, no error, from 127.0.0.1", tr, rel, len(want))
			}
		})
	}
}

// request sends a raw request packet and returns the ERROR it must get back. Raw packets let
// the test send names (NUL, backslash) exactly as a hostile client would.
func request(t *testing.T, server *net.UDPAddr, op uint16, name string, opts ...string) (code uint16, msg string) {
	t.Helper()
	pkt := binary.BigEndian.AppendUint16(nil, op)
	for _, f := range append([]string{name, "octet"}, opts...) {
		pkt = append(append(pkt, f...), 0)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDP(pkt, server); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no answer to %q: %v", name, err)
	}
	if n < 5 || binary.BigEndian.Uint16(buf) != 5 {
		t.Fatalf("request %q answered with opcode %d (%d bytes), want ERROR", name, binary.BigEndian.Uint16(buf), n)
	}
	return binary.BigEndian.Uint16(buf[2:]), string(bytes.TrimRight(buf[4:n], "\x00"))
}

func TestRefused(t *testing.T) {
	dir, secret := assets(t, map[string]int{"undionly.kpxe": 1000, "real.efi": 1000, "unlisted.bin": 1000})
	// Listed names that are symbolic links: the allowlist passes them, os.Root must not.
	links := map[string]string{
		"ipxe.efi":    "../outside/secret", // relative, escapes
		"snponly.efi": secret,              // absolute
		"dir.efi":     "../outside",        // a directory outside
		"loop.efi":    "loop.efi",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.efi"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	cfg := testConfig(dir, rec)
	cfg.Files = append(cfg.Files, "dir.efi", "loop.efi", "sub.efi", "missing.efi")
	addr := start(t, cfg)

	const denied, notFound = "access violation", "file not found"
	tests := []struct {
		name, want string
		file       string // as OnTransfer reports it
	}{
		{"../etc/passwd", denied, "../etc/passwd"},
		{"/../x", denied, "/../x"},
		{"a/../../b", denied, "a/../../b"},
		{"/etc/passwd", notFound, "etc/passwd"},
		{"//etc/passwd", denied, "//etc/passwd"},
		{"x\x00y", notFound, "x"}, // the NUL ends the name on the wire: "x" is requested
		{strings.Repeat("a", 300), denied, strings.Repeat("a", 300)},
		{`..\x`, denied, `..\x`},
		{`ipxe.efi\`, denied, `ipxe.efi\`},
		{"./undionly.kpxe", denied, "./undionly.kpxe"},
		{"undionly.kpxe/", denied, "undionly.kpxe/"},
		{"ipxe.efi", denied, "ipxe.efi"},
		{"snponly.efi", denied, "snponly.efi"},
		{"dir.efi", denied, "dir.efi"},
		{"loop.efi", denied, "loop.efi"},
		{"sub.efi", denied, "sub.efi"},
		{"missing.efi", notFound, "missing.efi"},
		{"unlisted.bin", notFound, "unlisted.bin"},
		{"real.efi", notFound, "real.efi"},
		{"/", denied, "/"},
		{"", denied, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := request(t, addr, 1, tc.name)
			if code != 1 || msg != tc.want {
				t.Errorf("got error %d %q, want 1 %q", code, msg, tc.want)
			}
			if strings.Contains(msg, "SECRET") {
				t.Errorf("error message leaks content: %q", msg)
			}
			tr := rec.wait(t, i+1)[i]
			if tr.File != tc.file || tr.Bytes != 0 || tr.Err == nil {
				t.Errorf("OnTransfer got %+v, want file %q, 0 bytes, an error", tr, tc.file)
			}
			wantErr := ErrNotFound
			if tc.want == denied {
				wantErr = ErrAccessViolation
			}
			if !errors.Is(tr.Err, wantErr) {
				t.Errorf("OnTransfer error %v, want one wrapping %v", tr.Err, wantErr)
			}
		})
	}

	t.Run("write request", func(t *testing.T) {
		if code, _ := request(t, addr, 2, "undionly.kpxe"); code != 1 {
			t.Errorf("WRQ answered with error code %d, want 1", code)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "undionly.kpxe")); len(b) != 1000 {
			t.Errorf("undionly.kpxe changed size to %d", len(b))
		}
	})
}

func TestSymlinkInsideAssets(t *testing.T) {
	dir, _ := assets(t, map[string]int{"ipxe-x86_64.efi": 5000})
	if err := os.Symlink("ipxe-x86_64.efi", filepath.Join(dir, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	addr := start(t, testConfig(dir, rec))
	c, _ := tftp.NewClient(addr.String())
	wt, err := c.Receive("ipxe.efi", "octet")
	if err != nil {
		t.Fatalf("a relative link inside the assets directory is refused: %v", err)
	}
	var got bytes.Buffer
	if _, err := wt.WriteTo(&got); err != nil || got.Len() != 5000 {
		t.Fatalf("got %d bytes, %v; want 5000", got.Len(), err)
	}
}

// TestBlockSizeCap asks for a 9000-byte block on loopback (MTU 65536) and expects the OACK to
// carry MaxBlockSize, with tsize filled in.
func TestBlockSizeCap(t *testing.T) {
	dir, _ := assets(t, map[string]int{"ipxe.efi": 20000})
	rec := &recorder{}
	addr := start(t, testConfig(dir, rec))

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pkt := binary.BigEndian.AppendUint16(nil, 1)
	for _, f := range []string{"ipxe.efi", "octet", "blksize", "9000", "tsize", "0"} {
		pkt = append(append(pkt, f...), 0)
	}
	c.WriteToUDP(pkt, addr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if op := binary.BigEndian.Uint16(buf); op != 6 {
		t.Fatalf("opcode %d, want OACK", op)
	}
	got := map[string]string{}
	f := bytes.Split(bytes.TrimSuffix(buf[2:n], []byte{0}), []byte{0})
	for i := 0; i+1 < len(f); i += 2 {
		got[string(f[i])] = string(f[i+1])
	}
	if diff := cmp.Diff(map[string]string{"blksize": "1468", "tsize": "20000"}, got); diff != "" {
		t.Errorf("OACK options (-want +got):\n%s", diff)
	}
	// Abort the transfer (ERROR code 0) so the server need not time out.
	abort := append(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 5), 0), "done\x00"...)
	c.WriteToUDP(abort, from)
	if tr := rec.wait(t, 1)[0]; tr.Err == nil || errors.Is(tr.Err, ErrNotFound) || errors.Is(tr.Err, ErrAccessViolation) {
		t.Errorf("aborted transfer reported %+v, want a transfer failure", tr)
	}
}

func TestMetrics(t *testing.T) {
	dir, _ := assets(t, map[string]int{"undionly.kpxe": 3000})
	reg := prometheus.NewRegistry()
	rec := &recorder{}
	cfg := testConfig(dir, rec)
	cfg.Metrics = reg
	addr := start(t, cfg)

	c, _ := tftp.NewClient(addr.String())
	for range 2 {
		wt, err := c.Receive("undionly.kpxe", "octet")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := wt.WriteTo(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
	}
	request(t, addr, 1, "../x")
	request(t, addr, 1, "nope-1")
	request(t, addr, 1, "nope-2")
	rec.wait(t, 5)

	// A second server on the same registry adopts the counters instead of failing.
	if _, err := New(cfg); err != nil {
		t.Fatalf("second New on the same registry: %v", err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"deployme_tftp_transfers_total file=undionly.kpxe result=ok": 2,
		"deployme_tftp_transfers_total file=other result=denied":     1,
		"deployme_tftp_transfers_total file=other result=not_found":  2,
		"deployme_tftp_bytes_total file=undionly.kpxe":               6000,
		"deployme_tftp_bytes_total file=other":                       0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Assets = t.TempDir()
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"no assets", func(c *Config) { c.Assets = "" }},
		{"no files", func(c *Config) { c.Files = nil }},
		{"escaping file", func(c *Config) { c.Files = []string{"../x"} }},
		{"leading slash", func(c *Config) { c.Files = []string{"/ipxe.efi"} }},
		{"duplicate", func(c *Config) { c.Files = []string{"a", "a"} }},
		{"block size 512", func(c *Config) { c.MaxBlockSize = 512 }},
		{"block size too large", func(c *Config) { c.MaxBlockSize = 65465 }},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }},
		{"zero retries", func(c *Config) { c.Retries = 0 }},
		{"window too large", func(c *Config) { c.Anticipate = 61 }},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config with assets: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.Files = append([]string(nil), ok.Files...)
			tc.mutate(&c)
			if err := c.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
		})
	}
	t.Run("assets not a directory", func(t *testing.T) {
		c := ok
		c.Assets = filepath.Join(t.TempDir(), "nope")
		if _, err := New(c); err == nil {
			t.Error("New accepted a missing assets directory")
		}
	})
}
