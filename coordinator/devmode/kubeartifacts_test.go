package devmode_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/kubestore"
)

func TestSeedKubeArtifacts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kube-artifacts")
	real := filepath.Join(dir, "v1.37.2", "linux-amd64", "kubelet")
	if err := os.MkdirAll(filepath.Dir(real), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, []byte("an operator's real kubelet"), 0o755); err != nil {
		t.Fatal(err)
	}
	versions := []string{"v1.37.2", "v1.36.6"}
	for range 2 { // the second run, a restart, changes nothing
		if err := devmode.SeedKubeArtifacts(dir, versions); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	for _, v := range versions {
		for _, n := range []string{"kubeadm", "kubelet", "kubectl"} {
			want[v+"/linux-amd64/"+n] = "fake-kube-binary\nname=" + n + "\nversion=" + v + "\n"
		}
	}
	want["v1.37.2/linux-amd64/kubelet"] = "an operator's real kubelet"
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = string(b)
		if fi, _ := d.Info(); fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", rel, fi.Mode().Perm())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("store content (-want +got):\n%s", diff)
	}

	// What it seeds is a complete store for every version.
	cfg := kubestore.DefaultConfig()
	cfg.Dir = dir
	s, err := kubestore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, v := range versions {
		if _, err := s.Binaries(v); err != nil {
			t.Errorf("Binaries(%s): %v", v, err)
		}
	}

	if err := devmode.SeedKubeArtifacts(dir, []string{"1.38"}); err == nil {
		t.Error("a malformed version was accepted")
	}
}
