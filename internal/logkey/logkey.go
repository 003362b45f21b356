// Package logkey defines the slog attribute keys used across the project, once, so logs can
// be queried by stable snake_case names.
package logkey

const (
	Addr         = "addr"
	ClusterID    = "cluster_id"
	CommandType  = "command_type"
	Duration     = "duration"
	Err          = "err"
	HostID       = "host_id"
	Leader       = "leader"
	Method       = "method"
	NodeID       = "node_id"
	Path         = "path"
	RaftIndex    = "raft_index"
	RemoteAddr   = "remote_addr"
	Status       = "status"
	TokenID      = "token_id"
	Component    = "component"
	DataDir      = "data_dir"
	SnapshotSize = "snapshot_size"
	Epoch        = "epoch"
	HighestEpoch = "highest_epoch"
	Holder       = "holder"
	Link         = "link"
	Label        = "label"
	// DHCP (pxe/dhcp).
	MAC      = "mac"
	XID      = "xid"
	MsgType  = "msg_type"
	Arch     = "arch"
	BootFile = "boot_file"
	IP       = "ip"
	Mode     = "mode"
	// Boot files (pxe/tftp, pxe/httpboot).
	Bytes       = "bytes"
	Result      = "result"
	TFTPOptions = "tftp_options"
	BootNext    = "boot_next"
	// DHCP requests (pxe/dhcp). ClientClass is "ipxe", "pxe" or "plain".
	ClientClass = "client_class"
	VendorClass = "vendor_class"
	ServerID    = "server_id"
	Port        = "port"
	Event       = "event"
	Detail      = "detail"
)
