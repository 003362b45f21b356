// Package dhcp is the coordinator's embedded DHCPv4 server for PXE: it tells booting machines
// which iPXE binary to fetch over TFTP, and tells iPXE where its per-machine script is.
//
// Two modes (DESIGN.md §4 `--pxe-dhcp-mode`; "off" means the caller starts no Server):
//
//   - proxy (default): the site's DHCP server hands out addresses and we only add boot
//     information, as a proxyDHCP server (PXE spec 2.1, RFC 4578). A PXEClient DISCOVER on
//     port 67 gets an OFFER with no address (yiaddr 0.0.0.0), option 60 "PXEClient", option
//     54 and the boot file; a PXE REQUEST on port 4011 gets an ACK with the boot file. Nothing
//     else is ever answered, so we cannot fight the site's server.
//   - full: we are the segment's DHCP server too; addresses come from Backend.Lease (kept in
//     Raft by the coordinator) and PXE clients also get the boot file. Port 4011 is optional
//     here and answered the same way if the caller opens it.
//
// Which file. A client is a PXE client if its vendor class (option 60) starts with
// "PXEClient" or its user class (option 77) is "iPXE". Its architecture comes from option 93,
// else from the "PXEClient:Arch:NNNNN" vendor class, else it is taken as BIOS (RFC 4578
// makes option 93 mandatory, but the older ROMs that omit it are all BIOS). BIOS (0) gets
// Config.BIOSFile over TFTP, EFI x86-64 (7) and EFI BC (9) get Config.UEFIFile; every other
// architecture is refused, silently and logged: we boot x86-64 images only.
//
// Chain loops. A client whose user class is "iPXE" gets the HTTP URL of its script
// (HTTPBase + "/boot/ipxe?mac=<mac>") and never a binary; every other PXE client gets the
// binary. The rule is stateless, so two replicas or a restart cannot disagree, and it
// cannot loop: the binary we hand out is iPXE, whose own DHCP carries user class "iPXE".
// Its price: a NIC whose ROM already is iPXE (QEMU's NIC ROMs are) goes straight to the
// script with the ROM's iPXE, never chaining ours (FACTS.md §3 measured that path as the
// fastest). Keying on "a later transaction from the same MAC" as the probe did
// needs per-MAC state shared by all replicas and misfires on retransmissions, so we do not.
//
// iPXE option 175. Every full-mode OFFER and ACK to a PXE client carries iPXE's encapsulated
// option 175 with sub-option 176 (no-pxedhcp) = 1: we are the only DHCP server, so iPXE must
// not wait the extra seconds for proxyDHCP offers that will never come (FACTS.md §3 pitfall
// 1). Other ROMs ignore option 175. Proxy answers never carry it: there the site's offer and
// ours must both be collected.
//
// RELEASE and DECLINE (full mode) are logged and recorded as events but change nothing: the
// Backend owns leases, and a machine that releases its address while rebooting through
// provisioning should get the same one back. A DECLINE (the address is in use by someone
// else) is logged as a warning since the operator must fix the conflict; the same address
// will be offered again until the Backend changes it.
//
// Handle is the whole decision, pure but for Backend calls; Serve only moves bytes.
package dhcp
