package state

import "time"

// AgentCA is the certificate authority that identifies hosts: each agent's client
// certificate is signed by it. Stored in Raft so every replica can verify and issue.
// (Encrypting the key at rest with a coordinator keyring comes with cluster PKI.)
type AgentCA struct {
	CertDER   []byte    `json:"cert_der"`
	KeyDER    []byte    `json:"key_der"`
	CreatedAt time.Time `json:"created_at"`
}

// AgentCA returns the agent CA, nil before it exists.
func (s *State) AgentCA() *AgentCA { return s.agentCA }

// SetAgentCA stores the agent CA.
func (s *State) SetAgentCA(ca *AgentCA) { s.agentCA = ca }
