package dhcp

import (
	"context"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestChainIPXE: with ChainIPXE an iPXE ROM gets our iPXE binary over TFTP in its first
// transaction (OFFER and ACK alike), the chained binary's new transaction gets the script,
// and after ChainMemory the machine is chained again (a reboot). Without it, the script at once.
func TestChainIPXE(t *testing.T) {
	cfg := testConfig(ModeFull, newFakeBackend())
	cfg.ChainIPXE = true
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	xid := func(b byte) dhcpv4.Modifier { return dhcpv4.WithTransactionID(dhcpv4.TransactionID{9, 9, 9, b}) }
	file := func(mt dhcpv4.MessageType, id byte) string {
		t.Helper()
		r := s.Handle(context.Background(), packet(mt, with(ipxeBIOS, xid(id), requestedIP("10.0.0.50"), serverID("10.0.0.1"))...), false)
		if r == nil {
			t.Fatalf("no answer to %s of transaction %d", mt, id)
		}
		return r.BootFileName
	}
	if got := file(dhcpv4.MessageTypeDiscover, 1); got != "undionly.kpxe" {
		t.Errorf("ROM's DISCOVER: file %q, want undionly.kpxe", got)
	}
	if got := file(dhcpv4.MessageTypeRequest, 1); got != "undionly.kpxe" {
		t.Errorf("ROM's REQUEST (same transaction): file %q, want undionly.kpxe", got)
	}
	script := "http://10.0.0.1:8080/boot/ipxe?mac=" + testMAC.String()
	if got := file(dhcpv4.MessageTypeDiscover, 2); got != script {
		t.Errorf("chained iPXE's DISCOVER: file %q, want the script", got)
	}
	if got := file(dhcpv4.MessageTypeRequest, 2); got != script {
		t.Errorf("chained iPXE's REQUEST: file %q, want the script", got)
	}
	now = now.Add(cfg.ChainMemory + time.Second)
	if got := file(dhcpv4.MessageTypeDiscover, 3); got != "undionly.kpxe" {
		t.Errorf("after a reboot: file %q, want undionly.kpxe", got)
	}

	plainCfg := testConfig(ModeFull, newFakeBackend())
	p, err := New(plainCfg)
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Handle(context.Background(), packet(dhcpv4.MessageTypeDiscover, ipxeBIOS...), false); r == nil || r.BootFileName != script {
		t.Errorf("without ChainIPXE: %v, want the script", r)
	}
}
