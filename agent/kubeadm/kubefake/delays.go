package kubefake

import "time"

// realistic are the phase durations of a kubeadm v1.37 cluster on a small VM with images
// already cached: init takes about 40 s (most of it waiting for the control plane to come
// up), a worker join about 15 s (mostly the kubelet's TLS bootstrap).
var realistic = map[string]time.Duration{
	"init/preflight":          2 * time.Second,
	"init/certs":              1500 * time.Millisecond,
	"init/kubeconfig":         500 * time.Millisecond,
	"init/etcd":               500 * time.Millisecond,
	"init/control-plane":      500 * time.Millisecond,
	"init/kubelet-start":      1 * time.Second,
	"init/wait-control-plane": 25 * time.Second,
	"init/upload-config":      1 * time.Second,
	"init/upload-certs":       0,
	"init/mark-control-plane": 1 * time.Second,
	"init/bootstrap-token":    1 * time.Second,
	"init/kubelet-finalize":   500 * time.Millisecond,
	"init/addons":             5500 * time.Millisecond,

	"join/preflight":              2 * time.Second,
	"join/control-plane-prepare":  3 * time.Second,
	"join/control-plane":          500 * time.Millisecond,
	"join/check-etcd":             1 * time.Second,
	"join/kubelet-start":          1 * time.Second,
	"join/etcd-join":              5 * time.Second,
	"join/kubelet-wait-bootstrap": 12 * time.Second,
	"join/control-plane-join":     1 * time.Second,
	"join/wait-control-plane":     8 * time.Second,

	"reset/preflight":          200 * time.Millisecond,
	"reset/remove-etcd-member": 500 * time.Millisecond,
	"reset/cleanup-node":       1 * time.Second,

	// An upgrade restarts the control plane's static Pods one by one and waits for each;
	// a worker only rewrites its kubelet configuration.
	"upgrade/apply": 45 * time.Second,
	"upgrade/node":  30 * time.Second,

	"token/create":  300 * time.Millisecond,
	"kubectl/apply": 1 * time.Second,
	// A drain evicts nothing but waits on the API server a few times; delete is one call.
	"kubectl/drain":  2 * time.Second,
	"kubectl/delete": 300 * time.Millisecond,
	"kubectl/exec":   500 * time.Millisecond,
	"node-ready":     5 * time.Second,
}

// RealisticDelays returns a Delay function with realistic per-phase timings (kubeadm init
// ≈ 40 s over its phases, a worker join ≈ 15 s, token create 0.3 s, kubectl apply 1 s, a
// node Ready ≈ 5 s after its CNI) scaled by scale (1 = realistic, 0.01 for fast demos).
// Unknown phases take no time.
func RealisticDelays(scale float64) func(phase string) time.Duration {
	return func(phase string) time.Duration {
		return time.Duration(float64(realistic[phase]) * scale)
	}
}
