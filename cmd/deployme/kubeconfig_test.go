package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// apiKubeconfig is a kubeconfig shaped like the coordinator's: one cluster named after the
// cluster, user deployme-admin, context deployme-admin@<name>.
func apiKubeconfig(t *testing.T, name, server string) []byte {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: []byte("ca-" + name)}
	cfg.AuthInfos["deployme-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte("cert-" + name), ClientKeyData: []byte("key-" + name)}
	cfg.Contexts["deployme-admin@"+name] = &clientcmdapi.Context{Cluster: name, AuthInfo: "deployme-admin"}
	cfg.CurrentContext = "deployme-admin@" + name
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMergeKubeconfig: merging keeps what the file had, adds the cluster under its own
// name, makes it current, replaces an older entry of the same name, and leaves the file
// private.
func TestMergeKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	existing := clientcmdapi.NewConfig()
	existing.Clusters["work"] = &clientcmdapi.Cluster{Server: "https://work:6443"}
	existing.AuthInfos["me"] = &clientcmdapi.AuthInfo{Token: "t"}
	existing.Contexts["work"] = &clientcmdapi.Context{Cluster: "work", AuthInfo: "me", Namespace: "apps"}
	existing.CurrentContext = "work"
	b, err := clientcmd.Write(*existing)
	if err != nil {
		t.Fatal(err)
	}
	// Readable by others, as a hand-made file may be: the merge tightens it.
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	if err := mergeKubeconfig(path, "demo", apiKubeconfig(t, "demo", "https://10.0.0.1:6443")); err != nil {
		t.Fatal(err)
	}
	// A second merge of the same cluster (new credentials) replaces, never duplicates.
	if err := mergeKubeconfig(path, "demo", apiKubeconfig(t, "demo", "https://10.0.0.2:6443")); err != nil {
		t.Fatal(err)
	}

	got, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Current  string
		Contexts map[string]string // name -> cluster/user/namespace
		Servers  map[string]string
		Certs    map[string]string
	}
	s := summary{Current: got.CurrentContext, Contexts: map[string]string{}, Servers: map[string]string{}, Certs: map[string]string{}}
	for n, c := range got.Contexts {
		s.Contexts[n] = c.Cluster + "/" + c.AuthInfo + "/" + c.Namespace
	}
	for n, c := range got.Clusters {
		s.Servers[n] = c.Server
	}
	for n, u := range got.AuthInfos {
		s.Certs[n] = string(u.ClientCertificateData)
	}
	want := summary{
		Current:  "demo",
		Contexts: map[string]string{"work": "work/me/apps", "demo": "demo/demo-admin/"},
		Servers:  map[string]string{"work": "https://work:6443", "demo": "https://10.0.0.2:6443"},
		Certs:    map[string]string{"me": "", "demo-admin": "cert-demo"},
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("merged kubeconfig (-want +got):\n%s", diff)
	}
	if st, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
}

// TestMergeKubeconfigNew: without a file, the merge creates one (and its directory) privately.
func TestMergeKubeconfigNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".kube", "config")
	if err := mergeKubeconfig(path, "demo", apiKubeconfig(t, "demo", "https://10.0.0.1:6443")); err != nil {
		t.Fatal(err)
	}
	got, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.CurrentContext != "demo" || got.Clusters["demo"] == nil || got.AuthInfos["demo-admin"] == nil {
		t.Errorf("new kubeconfig: current %q, clusters %v, users %v", got.CurrentContext, got.Clusters, got.AuthInfos)
	}
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		if st, err := os.Stat(p); err != nil {
			t.Error(err)
		} else if st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
}

// TestMergeKubeconfigKeepsBrokenFile: a file that does not parse is not overwritten.
func TestMergeKubeconfigKeepsBrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte("clusters: [this is not"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := mergeKubeconfig(path, "demo", apiKubeconfig(t, "demo", "https://10.0.0.1:6443")); err == nil {
		t.Fatal("merge into a broken file succeeded")
	}
	if b, _ := os.ReadFile(path); string(b) != "clusters: [this is not" {
		t.Errorf("broken file was changed to %q", b)
	}
}

func TestDefaultKubeconfigPath(t *testing.T) {
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists")
	if err := os.WriteFile(exists, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	list := func(x, y string) string { return x + string(filepath.ListSeparator) + y }
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{name: "home", env: map[string]string{"HOME": "/home/u"}, want: "/home/u/.kube/config"},
		{name: "one KUBECONFIG file, existing or not", env: map[string]string{"HOME": "/home/u", "KUBECONFIG": a}, want: a},
		{name: "the first existing file of the list", env: map[string]string{"KUBECONFIG": list(a, exists)}, want: exists},
		{name: "else the last file of the list", env: map[string]string{"KUBECONFIG": list(a, b)}, want: b},
		{name: "nothing known", env: map[string]string{}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := defaultKubeconfigPath(func(k string) string { return tc.env[k] })
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("defaultKubeconfigPath = %q, %v; want %q (error: %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
