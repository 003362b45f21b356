// Package kubeadm checks agent/kubeadm's rendered configurations, and the coordinator's
// cluster PKI, against a real kubeadm v1.37 binary instead of against our reading of its
// types: a misplaced field renders fine and passes our golden files, and only kubeadm's
// strict decoding catches it.
//
// The binary comes from `make kubeadm` (tools/bin/kubeadm) or $DEPLOYME_KUBEADM; without it
// the tests skip. The dry-run test also needs root and `ip netns`: kubeadm's preflight
// resolves the node name, so it runs in a network namespace of its own where nothing can
// leave the machine.
package kubeadm
