package raftnode

// PipelineErr is what the node's transport answers when raft asks for a pipeline. The
// address is never dialled: a transport with pipelining off refuses before connecting.
func PipelineErr(n *Node) error {
	_, err := n.trans.AppendEntriesPipeline("peer", "127.0.0.2:9")
	return err
}
