//go:build tools

// Package tools pins kubeadm's main package in this module's go.mod and go.sum, so that
// `make kubeadm` builds k8s.io/kubernetes/cmd/kubeadm at exactly the required version. The
// build tag keeps the file out of every ordinary build: nothing here is meant to compile.
package tools

import _ "k8s.io/kubernetes/cmd/kubeadm"
