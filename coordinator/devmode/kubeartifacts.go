package devmode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/deployme/deployme/coordinator/kubestore"
	"github.com/deployme/deployme/internal/atomicfile"
)

// FakeKubeBinary is the content of a simulated Kubernetes binary: what the simulator's
// kubeadm says it is, so a simulated host "runs" whatever the artifact store handed it.
func FakeKubeBinary(name, version string) []byte {
	return []byte("fake-kube-binary\nname=" + name + "\nversion=" + version + "\n")
}

// SeedKubeArtifacts fills an artifact store's directory (kubestore layout) with fake
// kubeadm, kubelet and kubectl for each version, so that upgrades can be tried in
// development mode. A file already there is left alone: an operator who put real binaries
// in the directory keeps them, and a restart changes nothing.
func SeedKubeArtifacts(dir string, versions []string) error {
	for _, v := range versions {
		if err := kubestore.CheckVersion(v); err != nil {
			return fmt.Errorf("seed kube artifacts: %w", err)
		}
		for _, name := range kubestore.Names {
			p := kubestore.BinaryPath(dir, v, name)
			if _, err := os.Lstat(p); err == nil {
				continue
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("seed kube artifacts: %w", err)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fmt.Errorf("seed kube artifacts: %w", err)
			}
			if err := atomicfile.Write(p, FakeKubeBinary(name, v), 0o755); err != nil {
				return fmt.Errorf("seed kube artifacts: %w", err)
			}
		}
	}
	return nil
}
