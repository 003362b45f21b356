package agentsvc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	v1 "github.com/deployme/deployme/api/v1"
	"github.com/deployme/deployme/coordinator/service"
	agentv1 "github.com/deployme/deployme/proto/agent/v1"
)

// memBackend holds one registered host and applies inventory updates to it, counting them.
type memBackend struct {
	mu     sync.Mutex
	host   v1.Host
	writes int
}

func newMemBackend() *memBackend {
	return &memBackend{host: v1.Host{ID: "host_1", InfraID: "infra_1", Hostname: "n1", State: v1.HostAvailable, CPUs: 2, MemoryBytes: 1 << 30}}
}

func (b *memBackend) AgentServerCertificate([]string) (tls.Certificate, error) {
	return tls.Certificate{}, errors.New("not used")
}
func (b *memBackend) AgentCAPool() *x509.CertPool { return nil }
func (b *memBackend) RegisterAgent(context.Context, string, service.HostRegistration, []byte) (*service.AgentRegistration, error) {
	return nil, errors.New("not used")
}
func (b *memBackend) RenewAgent(context.Context, string, []byte) ([]byte, error) {
	return nil, errors.New("not used")
}
func (b *memBackend) AgentCoordinators() []string { return []string{"127.0.0.1:9090"} }
func (b *memBackend) HostCount() int              { return 1 }

func (b *memBackend) AgentHost(id string) (*v1.Host, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id != b.host.ID {
		return nil, false
	}
	h := b.host
	return &h, true
}

func (b *memBackend) RegisterHost(_ context.Context, reg service.HostRegistration) (*v1.Host, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if reg.ID != b.host.ID || reg.InfraID != b.host.InfraID {
		return nil, v1.Errorf(v1.CodeNotFound, "host %s not found", reg.ID)
	}
	b.writes++
	b.host.Hostname, b.host.CPUs, b.host.MemoryBytes, b.host.AgentVersion = reg.Hostname, reg.CPUs, reg.MemoryBytes, reg.AgentVersion
	b.host.Disks, b.host.NICs, b.host.Labels = reg.Disks, reg.NICs, reg.Labels
	h := b.host
	return &h, nil
}

// fakeStream is the server side of a Connect stream: it yields its messages, then io.EOF,
// and records what the server sends.
type fakeStream struct {
	grpc.ServerStream
	ctx  context.Context
	in   []*agentv1.AgentMessage
	sent []*agentv1.CoordinatorMessage
}

func (s *fakeStream) Context() context.Context { return s.ctx }
func (s *fakeStream) Recv() (*agentv1.AgentMessage, error) {
	if len(s.in) == 0 {
		return nil, io.EOF
	}
	m := s.in[0]
	s.in = s.in[1:]
	return m, nil
}
func (s *fakeStream) Send(m *agentv1.CoordinatorMessage) error {
	s.sent = append(s.sent, m)
	return nil
}
func (s *fakeStream) SetHeader(metadata.MD) error  { return nil }
func (s *fakeStream) SendHeader(metadata.MD) error { return nil }
func (s *fakeStream) SetTrailer(metadata.MD)       {}

// agentContext is a stream context as mutual TLS leaves it for an agent certificate.
func agentContext(ctx context.Context, hostID string) context.Context {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: hostID}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}}})
}

func marshal(f *testing.F, m *agentv1.AgentMessage) []byte {
	f.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzConnectMessages runs the real Connect handler over an in-memory stream carrying an
// arbitrary agent message (after a hello unless skipHello, then the same message again, as
// a reconnecting agent resends it, then a heartbeat). The handler must not panic, must
// refuse a stream that does not start with hello and a repeated or empty hello, must keep
// the stream for heartbeats, step updates and inventories (valid or not), must apply a valid
// inventory exactly once and an invalid one never, and must answer the last heartbeat.
func FuzzConnectMessages(f *testing.F) {
	inv := &agentv1.Inventory{
		Hostname: "n1", Cpus: 8, MemoryBytes: 32 << 30, AgentVersion: "v0.1.0",
		Disks:  []*agentv1.Disk{{Name: "vda", SizeBytes: 1 << 40, Serial: "s1"}},
		Nics:   []*agentv1.NIC{{Name: "eth0", Mac: "52:54:00:00:00:01", SpeedMbps: 1000, Addresses: []string{"10.0.0.5/24"}, Up: true}},
		Labels: map[string]string{"rack": "r1"},
	}
	for _, m := range []*agentv1.AgentMessage{
		{Body: &agentv1.AgentMessage_Heartbeat{Heartbeat: &agentv1.Heartbeat{Seq: 7}}},
		{Id: "inv-1", Body: &agentv1.AgentMessage_Inventory{Inventory: inv}},
		{Body: &agentv1.AgentMessage_Inventory{Inventory: inv}},
		{Id: "inv-2", Body: &agentv1.AgentMessage_Inventory{Inventory: &agentv1.Inventory{Hostname: "n1", Cpus: -1}}},
		{Id: "inv-3", Body: &agentv1.AgentMessage_Inventory{Inventory: &agentv1.Inventory{Hostname: strings.Repeat("h", maxString+1)}}},
		{Id: "inv-4", Body: &agentv1.AgentMessage_Inventory{Inventory: &agentv1.Inventory{Hostname: "n1", Labels: map[string]string{"": "v"}}}},
		{Id: "inv-5", Body: &agentv1.AgentMessage_Inventory{}},
		{Id: "st-1", Body: &agentv1.AgentMessage_StepUpdate{StepUpdate: &agentv1.StepUpdate{StepId: "s1", Name: "kubeadm-join", State: "failed", Message: "x"}}},
		{Body: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "v0.1.0"}}},
		{Id: "empty"},
	} {
		data := marshal(f, m)
		f.Add(data, false)
		f.Add(data, true)
	}
	f.Add([]byte{}, false)
	// An inventory whose hostname is not UTF-8: proto.Unmarshal refuses it before the handler.
	f.Add([]byte{0x22, 0x03, 0x0a, 0x01, 0xff}, false)
	f.Fuzz(func(t *testing.T, data []byte, skipHello bool) {
		var m agentv1.AgentMessage
		if proto.Unmarshal(data, &m) != nil {
			t.Skip("not an agent message")
		}
		b := newMemBackend()
		before, _ := b.AgentHost("host_1")
		srv := New(Config{ReplicaID: "r1", Now: func() time.Time { return time.Unix(1000, 0) }}, b)
		var in []*agentv1.AgentMessage
		if !skipHello {
			in = append(in, &agentv1.AgentMessage{Body: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "v0.1.0"}}})
		}
		in = append(in, &m, proto.Clone(&m).(*agentv1.AgentMessage),
			&agentv1.AgentMessage{Body: &agentv1.AgentMessage_Heartbeat{Heartbeat: &agentv1.Heartbeat{Seq: 42}}})
		ctx, cancel := context.WithTimeout(agentContext(context.Background(), "host_1"), 10*time.Second)
		defer cancel()
		stream := &fakeStream{ctx: ctx, in: in}
		err := srv.Connect(stream)
		cancel() // ends the handler's reader goroutine if the handler returned early

		_, isHello := m.GetBody().(*agentv1.AgentMessage_Hello)
		wantRefused := m.GetBody() == nil || isHello
		if wantRefused {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Connect with %v (skipHello %v): %v; want InvalidArgument", &m, skipHello, err)
			}
			if b.writes != 0 {
				t.Fatalf("a refused stream wrote %d inventories", b.writes)
			}
			return
		}
		if skipHello {
			if status.Code(err) != codes.InvalidArgument || len(stream.sent) != 0 {
				t.Fatalf("Connect starting with %v: %v after %d replies; want InvalidArgument and none", &m, err, len(stream.sent))
			}
			return
		}
		if err != nil {
			t.Fatalf("Connect with %v: %v; want the stream kept until the agent closes it", &m, err)
		}
		if len(stream.sent) == 0 || stream.sent[0].GetWelcome().GetHostId() != "host_1" {
			t.Fatalf("first reply %v; want a welcome for host_1", stream.sent)
		}
		if last := stream.sent[len(stream.sent)-1]; last.GetHeartbeatAck().GetSeq() != 42 || last.GetHeartbeatAck().GetHeartbeatIntervalMs() <= 0 {
			t.Fatalf("last reply %v; want the ack of heartbeat 42 with an interval", last)
		}
		if lease, ok := srv.Leases().Snapshot()["host_1"]; !ok || lease.Replica != "r1" {
			t.Fatalf("lease after a stream: %v, %v", lease, ok)
		}
		after, _ := b.AgentHost("host_1")
		body, isInv := m.GetBody().(*agentv1.AgentMessage_Inventory)
		if !isInv {
			if b.writes != 0 {
				t.Fatalf("%v wrote %d inventories", &m, b.writes)
			}
			return
		}
		reg, rerr := registration(body.Inventory)
		switch {
		case rerr != nil:
			if b.writes != 0 || !sameInventory(after, registrationOf(before)) {
				t.Fatalf("the invalid inventory %v (%v) was applied", body.Inventory, rerr)
			}
		case b.writes > 1:
			t.Fatalf("an inventory sent twice was applied %d times", b.writes)
		case !sameInventory(after, reg):
			t.Fatalf("host after inventory %v is %+v", body.Inventory, after)
		}
	})
}

// registrationOf is the registration that would leave h unchanged.
func registrationOf(h *v1.Host) service.HostRegistration {
	return service.HostRegistration{
		ID: h.ID, InfraID: h.InfraID, Hostname: h.Hostname, CPUs: h.CPUs, MemoryBytes: h.MemoryBytes,
		Disks: h.Disks, NICs: h.NICs, Labels: h.Labels, AgentVersion: h.AgentVersion,
	}
}

// FuzzInventory checks inventory validation and conversion with arbitrary field values and
// list sizes: invalid input is an invalid_request error naming a field; valid input is
// converted faithfully and within every bound.
func FuzzInventory(f *testing.F) {
	f.Add("node-a", "v0.1.0", int32(4), int64(8<<30), "vda", "s1", int64(1<<30), "eth0", "52:54:00:00:00:01", "10.0.0.1/24", int32(1000), "rack", "r1", uint16(1), uint16(1), uint16(1), uint8(1))
	f.Add("", "", int32(-1), int64(-1), "", "", int64(-1), "", "", "", int32(-1), "", "", uint16(0), uint16(0), uint16(0), uint8(0))
	f.Add("\xff\xfe", "v", int32(1<<30), int64(1<<62), "\x00", "", int64(0), "e", "m", "a", int32(0), "k", "v", uint16(maxDisks+1), uint16(maxNICs+1), uint16(maxLabels+1), uint8(maxAddrs+1))
	f.Add(strings.Repeat("h", maxString+1), "v", int32(1), int64(1), "d", "s", int64(1), "n", "m", "a", int32(1), "k", strings.Repeat("v", maxString), uint16(maxDisks), uint16(maxNICs), uint16(maxLabels), uint8(maxAddrs))
	f.Fuzz(func(t *testing.T, hostname, version string, cpus int32, mem int64, disk, serial string, diskSize int64,
		nic, mac, addr string, speed int32, lk, lv string, nDisks, nNICs, nLabels uint16, nAddrs uint8) {
		inv := &agentv1.Inventory{Hostname: hostname, AgentVersion: version, Cpus: cpus, MemoryBytes: mem}
		for i := range int(nDisks) % (maxDisks + 2) {
			inv.Disks = append(inv.Disks, &agentv1.Disk{Name: disk, Serial: serial, SizeBytes: diskSize, Rotational: i%2 == 1})
		}
		addrs := slices.Repeat([]string{addr}, int(nAddrs)%(maxAddrs+2))
		for range int(nNICs) % (maxNICs + 2) {
			inv.Nics = append(inv.Nics, &agentv1.NIC{Name: nic, Mac: mac, Addresses: addrs, SpeedMbps: speed})
		}
		if n := int(nLabels) % (maxLabels + 2); n > 0 {
			inv.Labels = map[string]string{lk: lv}
			for i := 1; i < n; i++ {
				inv.Labels[lk+"-"+strings.Repeat("x", i)] = lv
			}
		}
		reg, err := registration(inv)
		if err != nil {
			var e *v1.Error
			if !errors.As(err, &e) || e.Code != v1.CodeInvalidRequest || e.Details["field"] == nil {
				t.Fatalf("registration: %v; want invalid_request naming a field", err)
			}
			return
		}
		valid := func(s string) bool { return len(s) <= maxString && utf8.ValidString(s) }
		if reg.Hostname != hostname || !valid(hostname) || hostname == "" || !valid(version) || reg.AgentVersion != version ||
			reg.CPUs != int(cpus) || cpus < 0 || reg.MemoryBytes != mem || mem < 0 {
			t.Fatalf("registration(%v) = %+v", inv, reg)
		}
		if len(reg.Disks) != len(inv.Disks) || len(reg.Disks) > maxDisks || len(reg.NICs) != len(inv.Nics) || len(reg.NICs) > maxNICs ||
			len(reg.Labels) != len(inv.Labels) || len(reg.Labels) > maxLabels {
			t.Fatalf("registration(%v) kept %d disks, %d nics, %d labels", inv, len(reg.Disks), len(reg.NICs), len(reg.Labels))
		}
		for i, d := range reg.Disks {
			if d.Name != disk || d.Serial != serial || d.SizeBytes != diskSize || d.SizeBytes < 0 || d.Rotational != (i%2 == 1) || !valid(disk) || !valid(serial) {
				t.Fatalf("disk %d converted to %+v", i, d)
			}
		}
		for i, n := range reg.NICs {
			if n.Name != nic || n.MAC != mac || n.SpeedMbps != int(speed) || speed < 0 || !slices.Equal(n.Addresses, addrs) || len(n.Addresses) > maxAddrs {
				t.Fatalf("nic %d converted to %+v", i, n)
			}
		}
		if !maps.Equal(reg.Labels, inv.Labels) {
			t.Fatalf("labels converted to %v, want %v", reg.Labels, inv.Labels)
		}
		for k, v := range reg.Labels {
			if k == "" || !valid(k) || !valid(v) {
				t.Fatalf("label %q=%q accepted", k, v)
			}
		}
		h := &v1.Host{Hostname: reg.Hostname, CPUs: reg.CPUs, MemoryBytes: reg.MemoryBytes, AgentVersion: reg.AgentVersion, Disks: reg.Disks, NICs: reg.NICs, Labels: reg.Labels}
		if !sameInventory(h, reg) {
			t.Fatalf("sameInventory is false for a host built from %+v", reg)
		}
	})
}
