package server_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployme/deployme/agent/artifacts"
	"github.com/deployme/deployme/coordinator/clustertest"
	"github.com/deployme/deployme/coordinator/devmode"
	"github.com/deployme/deployme/coordinator/kubestore"
	"github.com/deployme/deployme/coordinator/server"
)

// TestKubeArtifacts: a development coordinator fills its artifact store with fake binaries
// of every offered version and serves them, without a token, to an agent that installs
// them.
func TestKubeArtifacts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kube-artifacts")
	var versions []string
	c := clustertest.Start(t, clustertest.Options{Configure: func(cfg *server.Config) {
		d := devmode.DefaultConfig()
		d.Agents = 0
		cfg.Dev = &d
		cfg.KubeArtifactsDir = dir
		versions = nil
		for _, k := range cfg.Service.KubernetesVersions {
			versions = append(versions, k.Version)
		}
	}})
	store := c.Server().KubeStore()
	if store == nil {
		t.Fatal("KubeStore() is nil with KubeArtifactsDir set")
	}
	if len(versions) < 2 {
		t.Fatalf("offered versions %v, want at least two", versions)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := t.TempDir()
	f := &artifacts.Fetcher{BaseURLs: []string{c.URL()}}
	for _, v := range versions {
		bins, err := store.Binaries(v)
		if err != nil {
			t.Fatalf("Binaries(%s): %v", v, err)
		}
		for name, a := range bins {
			dest := filepath.Join(root, v, "usr/bin", name)
			changed, err := f.Install(ctx, artifacts.Want{Name: name, SHA256: a.SHA256, Size: a.Size}, dest)
			if err != nil || !changed {
				t.Fatalf("install %s %s from the coordinator: %v, %v", name, v, changed, err)
			}
			if b, _ := os.ReadFile(dest); string(b) != string(devmode.FakeKubeBinary(name, v)) {
				t.Errorf("installed %s %s: %q", name, v, b)
			}
		}
	}

	kubeadm, _ := store.Binaries(versions[0])
	for _, tc := range []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{"GET", kubestore.PathPrefix + kubeadm["kubeadm"].SHA256, 200, string(devmode.FakeKubeBinary("kubeadm", versions[0]))},
		{"HEAD", kubestore.PathPrefix + kubeadm["kubeadm"].SHA256, 200, ""},
		{"GET", kubestore.PathPrefix + strings.Repeat("0", 64), 404, `"error":"not_found"`},
		{"GET", kubestore.PathPrefix + "nope", 400, `"error":"invalid_request"`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tc.method, c.URL()+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus || !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("%d %q, want %d with %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if resp.Header.Get("X-RateLimit-Limit") == "" {
				t.Error("no rate-limit headers: the route is not served by the REST handler")
			}
		})
	}
}

// TestKubeArtifactsUnreadable: a wrong --kube-artifacts fails start-up, naming the directory.
func TestKubeArtifactsUnreadable(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.GRPCAddr, cfg.RaftAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.KubeArtifactsDir = filepath.Join(t.TempDir(), "missing")
	srv, err := server.New(cfg)
	if err == nil {
		t.Fatalf("New succeeded (%v) with a missing artifact directory", srv)
	}
	if !strings.Contains(err.Error(), cfg.KubeArtifactsDir) || !strings.Contains(err.Error(), "--kube-artifacts") {
		t.Errorf("error %q does not name the directory and the flag", err)
	}
}
