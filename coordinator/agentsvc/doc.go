// Package agentsvc is the coordinator's agent-facing gRPC service (proto/agent/v1): Register
// with a join token, Renew over mutual TLS, and the long-lived Connect stream carrying hello,
// heartbeats and inventory. It owns the agent endpoint's TLS configuration and keeps agent
// leases in memory (heartbeats are never Raft writes; DESIGN.md section 6).
package agentsvc
