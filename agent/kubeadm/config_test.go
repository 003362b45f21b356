package kubeadm

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	testToken = "abcdef.0123456789abcdef"
	testHash  = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func validInit() InitParams {
	return InitParams{
		ClusterName:          "prod-eu1",
		KubernetesVersion:    "v1.37.2",
		NodeName:             "cp1.prod-eu1.example.com",
		AdvertiseAddress:     "10.0.0.11",
		ControlPlaneEndpoint: "api.prod-eu1.example.com:6443",
		PodSubnet:            "10.244.0.0/16",
		ServiceSubnet:        "10.96.0.0/12",
		CertSANs:             []string{"api.prod-eu1.example.com", "10.0.0.10", "*.prod-eu1.example.com"},
		BootstrapToken:       testToken,
		BootstrapTokenTTL:    10 * time.Minute,
		CertificatesDir:      "/etc/kubernetes/pki",
		CRISocket:            "unix:///run/containerd/containerd.sock",
	}
}

func validJoin(controlPlane bool) JoinParams {
	p := JoinParams{
		NodeName:             "worker1",
		ControlPlaneEndpoint: "10.0.0.10:6443",
		Token:                testToken,
		CACertHash:           testHash,
	}
	if controlPlane {
		p.NodeName = "cp2"
		p.ControlPlane = true
		p.AdvertiseAddress = "10.0.0.12"
	}
	return p
}

// checkGolden compares got with testdata/name, or rewrites it under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-golden +got), run go test -update if intended:\n%s", file, diff)
	}
}

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		golden string
		render func() ([]byte, error)
	}{
		{"init_control_plane.golden", func() ([]byte, error) { return RenderInit(validInit()) }},
		{"join_control_plane.golden", func() ([]byte, error) { return RenderJoin(validJoin(true)) }},
		{"join_worker.golden", func() ([]byte, error) { return RenderJoin(validJoin(false)) }},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			got, err := tt.render()
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.golden, got)
		})
	}
}

// splitDocs decodes a multi-document file into one generic map per document.
func splitDocs(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var docs []map[string]any
	for part := range strings.SplitSeq(string(b), "---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(part), &m); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, part)
		}
		docs = append(docs, m)
	}
	return docs
}

// lookup follows a dotted path through nested maps.
func lookup(m map[string]any, path string) any {
	var v any = m
	for key := range strings.SplitSeq(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[key]
	}
	return v
}

func TestRenderInitDefaults(t *testing.T) {
	p := validInit()
	p.PodSubnet, p.ServiceSubnet, p.CertificatesDir, p.CRISocket = "", "", "", ""
	p.BootstrapTokenTTL = 0
	p.CertSANs = nil
	out, err := RenderInit(p)
	if err != nil {
		t.Fatal(err)
	}
	docs := splitDocs(t, out)
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want InitConfiguration and ClusterConfiguration", len(docs))
	}
	initDoc, clusterDoc := docs[0], docs[1]
	got := map[string]any{
		"init kind":                     lookup(initDoc, "kind"),
		"cluster kind":                  lookup(clusterDoc, "kind"),
		"nodeRegistration.criSocket":    lookup(initDoc, "nodeRegistration.criSocket"),
		"localAPIEndpoint.bindPort":     lookup(initDoc, "localAPIEndpoint.bindPort"),
		"networking.podSubnet":          lookup(clusterDoc, "networking.podSubnet"),
		"networking.serviceSubnet":      lookup(clusterDoc, "networking.serviceSubnet"),
		"certificatesDir":               lookup(clusterDoc, "certificatesDir"),
		"apiServer.certSANs":            lookup(clusterDoc, "apiServer.certSANs"),
		"bootstrapTokens[0].ttl":        lookup(initDoc["bootstrapTokens"].([]any)[0].(map[string]any), "ttl"),
		"encryptionAlgorithm":           lookup(clusterDoc, "encryptionAlgorithm"),
		"kubernetesVersion (explicit)":  lookup(clusterDoc, "kubernetesVersion"),
		"controlPlaneEndpoint (passed)": lookup(clusterDoc, "controlPlaneEndpoint"),
	}
	want := map[string]any{
		"init kind":                     "InitConfiguration",
		"cluster kind":                  "ClusterConfiguration",
		"nodeRegistration.criSocket":    DefaultCRISocket,
		"localAPIEndpoint.bindPort":     float64(6443),
		"networking.podSubnet":          DefaultPodSubnet,
		"networking.serviceSubnet":      DefaultServiceSubnet,
		"certificatesDir":               DefaultCertificatesDir,
		"apiServer.certSANs":            []any{},
		"bootstrapTokens[0].ttl":        "10m0s",
		"encryptionAlgorithm":           "ECDSA-P256",
		"kubernetesVersion (explicit)":  "v1.37.2",
		"controlPlaneEndpoint (passed)": "api.prod-eu1.example.com:6443",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rendered values (-want +got):\n%s", diff)
	}
}

func TestRenderJoinShape(t *testing.T) {
	tests := []struct {
		name string
		p    JoinParams
		want map[string]any
	}{
		{
			name: "worker has no controlPlane",
			p:    validJoin(false),
			want: map[string]any{"controlPlane": nil, "nodeRegistration.criSocket": DefaultCRISocket},
		},
		{
			name: "worker ignores a valid advertise address",
			p:    func() JoinParams { p := validJoin(false); p.AdvertiseAddress = "10.0.0.20"; return p }(),
			want: map[string]any{"controlPlane": nil, "nodeRegistration.criSocket": DefaultCRISocket},
		},
		{
			name: "control plane advertises without a certificate key",
			p:    validJoin(true),
			want: map[string]any{
				"controlPlane": map[string]any{
					"localAPIEndpoint": map[string]any{"advertiseAddress": "10.0.0.12", "bindPort": float64(6443)},
				},
				"nodeRegistration.criSocket": DefaultCRISocket,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := RenderJoin(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			docs := splitDocs(t, out)
			if len(docs) != 1 {
				t.Fatalf("got %d documents, want 1", len(docs))
			}
			got := map[string]any{}
			for k := range tt.want {
				got[k] = lookup(docs[0], k)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderInitInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*InitParams)
		field  string
	}{
		{"cluster name empty", func(p *InitParams) { p.ClusterName = "" }, "ClusterName"},
		{"cluster name uppercase", func(p *InitParams) { p.ClusterName = "Prod" }, "ClusterName"},
		{"cluster name underscore", func(p *InitParams) { p.ClusterName = "prod_eu" }, "ClusterName"},
		{"cluster name leading hyphen", func(p *InitParams) { p.ClusterName = "-prod" }, "ClusterName"},
		{"cluster name label too long", func(p *InitParams) { p.ClusterName = strings.Repeat("a", 64) }, "ClusterName"},
		{"cluster name too long", func(p *InitParams) { p.ClusterName = strings.Repeat(strings.Repeat("a", 63)+".", 4) + "a" }, "ClusterName"},
		{"cluster name empty label", func(p *InitParams) { p.ClusterName = "prod..eu" }, "ClusterName"},
		{"version empty", func(p *InitParams) { p.KubernetesVersion = "" }, "KubernetesVersion"},
		{"version without v", func(p *InitParams) { p.KubernetesVersion = "1.37.2" }, "KubernetesVersion"},
		{"version without patch", func(p *InitParams) { p.KubernetesVersion = "v1.37" }, "KubernetesVersion"},
		{"version label", func(p *InitParams) { p.KubernetesVersion = "stable" }, "KubernetesVersion"},
		{"version pre-release", func(p *InitParams) { p.KubernetesVersion = "v1.37.2-rc.0" }, "KubernetesVersion"},
		{"version leading zero", func(p *InitParams) { p.KubernetesVersion = "v1.037.2" }, "KubernetesVersion"},
		{"node name empty", func(p *InitParams) { p.NodeName = "" }, "NodeName"},
		{"node name uppercase", func(p *InitParams) { p.NodeName = "CP1" }, "NodeName"},
		{"node name label too long", func(p *InitParams) { p.NodeName = strings.Repeat("n", 64) + ".example.com" }, "NodeName"},
		{"advertise address empty", func(p *InitParams) { p.AdvertiseAddress = "" }, "AdvertiseAddress"},
		{"advertise address name", func(p *InitParams) { p.AdvertiseAddress = "cp1.example.com" }, "AdvertiseAddress"},
		{"advertise address with port", func(p *InitParams) { p.AdvertiseAddress = "10.0.0.11:6443" }, "AdvertiseAddress"},
		{"advertise address unspecified", func(p *InitParams) { p.AdvertiseAddress = "0.0.0.0" }, "AdvertiseAddress"},
		{"advertise address multicast", func(p *InitParams) { p.AdvertiseAddress = "224.0.0.1" }, "AdvertiseAddress"},
		{"advertise address zone", func(p *InitParams) { p.AdvertiseAddress = "fe80::1%eth0" }, "AdvertiseAddress"},
		{"endpoint empty", func(p *InitParams) { p.ControlPlaneEndpoint = "" }, "ControlPlaneEndpoint"},
		{"endpoint without port", func(p *InitParams) { p.ControlPlaneEndpoint = "10.0.0.10" }, "ControlPlaneEndpoint"},
		{"endpoint named port", func(p *InitParams) { p.ControlPlaneEndpoint = "10.0.0.10:https" }, "ControlPlaneEndpoint"},
		{"endpoint signed port", func(p *InitParams) { p.ControlPlaneEndpoint = "10.0.0.10:+6443" }, "ControlPlaneEndpoint"},
		{"endpoint port zero", func(p *InitParams) { p.ControlPlaneEndpoint = "10.0.0.10:0" }, "ControlPlaneEndpoint"},
		{"endpoint port too big", func(p *InitParams) { p.ControlPlaneEndpoint = "10.0.0.10:65536" }, "ControlPlaneEndpoint"},
		{"endpoint bad host", func(p *InitParams) { p.ControlPlaneEndpoint = "api_server:6443" }, "ControlPlaneEndpoint"},
		{"endpoint empty host", func(p *InitParams) { p.ControlPlaneEndpoint = ":6443" }, "ControlPlaneEndpoint"},
		{"endpoint unbracketed IPv6", func(p *InitParams) { p.ControlPlaneEndpoint = "fd00::1:6443" }, "ControlPlaneEndpoint"},
		{"endpoint URL", func(p *InitParams) { p.ControlPlaneEndpoint = "https://10.0.0.10:6443" }, "ControlPlaneEndpoint"},
		{"pod subnet not CIDR", func(p *InitParams) { p.PodSubnet = "10.244.0.0" }, "PodSubnet"},
		{"pod subnet host bits", func(p *InitParams) { p.PodSubnet = "10.244.1.0/16" }, "PodSubnet"},
		{"pod subnet dual-stack", func(p *InitParams) { p.PodSubnet = "10.244.0.0/16,fd00:10:244::/56" }, "PodSubnet"},
		{"pod subnet smaller than a node range", func(p *InitParams) { p.PodSubnet = "10.244.0.0/25" }, "PodSubnet"},
		{"pod subnet too many node ranges", func(p *InitParams) { p.PodSubnet = "10.0.0.0/7" }, "PodSubnet"},
		{"pod subnet IPv6 too small", func(p *InitParams) { p.PodSubnet = "fd00:10:244::/80" }, "PodSubnet"},
		{"service subnet not CIDR", func(p *InitParams) { p.ServiceSubnet = "services" }, "ServiceSubnet"},
		{"service subnet host bits", func(p *InitParams) { p.ServiceSubnet = "10.96.0.1/12" }, "ServiceSubnet"},
		{"service subnet too large", func(p *InitParams) { p.ServiceSubnet = "10.96.0.0/11" }, "ServiceSubnet"},
		{"service subnet too small", func(p *InitParams) { p.ServiceSubnet = "10.96.0.0/29" }, "ServiceSubnet"},
		{"service subnet IPv6 too large", func(p *InitParams) { p.ServiceSubnet = "fd00:10:96::/64" }, "ServiceSubnet"},
		{"service subnet overlaps pods", func(p *InitParams) { p.ServiceSubnet = "10.244.0.0/20" }, "ServiceSubnet"},
		{"cert SAN empty", func(p *InitParams) { p.CertSANs = []string{""} }, "CertSANs"},
		{"cert SAN uppercase", func(p *InitParams) { p.CertSANs = []string{"API.example.com"} }, "CertSANs"},
		{"cert SAN with port", func(p *InitParams) { p.CertSANs = []string{"10.0.0.10:6443"} }, "CertSANs"},
		{"cert SAN bare wildcard", func(p *InitParams) { p.CertSANs = []string{"*."} }, "CertSANs"},
		{"cert SAN inner wildcard", func(p *InitParams) { p.CertSANs = []string{"api.*.example.com"} }, "CertSANs"},
		{"cert SAN second entry", func(p *InitParams) { p.CertSANs = []string{"10.0.0.10", "bad name"} }, "CertSANs"},
		{"token empty", func(p *InitParams) { p.BootstrapToken = "" }, "BootstrapToken"},
		{"token uppercase", func(p *InitParams) { p.BootstrapToken = "ABCDEF.0123456789abcdef" }, "BootstrapToken"},
		{"token short secret", func(p *InitParams) { p.BootstrapToken = "abcdef.0123456789abcde" }, "BootstrapToken"},
		{"token no dot", func(p *InitParams) { p.BootstrapToken = "abcdef-0123456789abcdef" }, "BootstrapToken"},
		{"token ttl negative", func(p *InitParams) { p.BootstrapTokenTTL = -time.Minute }, "BootstrapTokenTTL"},
		{"certificates dir relative", func(p *InitParams) { p.CertificatesDir = "etc/kubernetes/pki" }, "CertificatesDir"},
		{"cri socket bare path", func(p *InitParams) { p.CRISocket = "/run/containerd/containerd.sock" }, "CRISocket"},
		{"cri socket other scheme", func(p *InitParams) { p.CRISocket = "npipe:////./pipe/containerd" }, "CRISocket"},
		{"cri socket relative", func(p *InitParams) { p.CRISocket = "unix://run/containerd.sock" }, "CRISocket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validInit()
			tt.mutate(&p)
			out, err := RenderInit(p)
			checkParamError(t, out, err, tt.field)
		})
	}
}

func TestRenderJoinInvalid(t *testing.T) {
	tests := []struct {
		name         string
		controlPlane bool
		mutate       func(*JoinParams)
		field        string
	}{
		{"node name empty", false, func(p *JoinParams) { p.NodeName = "" }, "NodeName"},
		{"node name uppercase", false, func(p *JoinParams) { p.NodeName = "Worker1" }, "NodeName"},
		{"node name label too long", false, func(p *JoinParams) { p.NodeName = strings.Repeat("w", 64) }, "NodeName"},
		{"endpoint empty", false, func(p *JoinParams) { p.ControlPlaneEndpoint = "" }, "ControlPlaneEndpoint"},
		{"endpoint without port", false, func(p *JoinParams) { p.ControlPlaneEndpoint = "api.example.com" }, "ControlPlaneEndpoint"},
		{"endpoint named port", false, func(p *JoinParams) { p.ControlPlaneEndpoint = "api.example.com:https" }, "ControlPlaneEndpoint"},
		{"endpoint port out of range", false, func(p *JoinParams) { p.ControlPlaneEndpoint = "api.example.com:99999" }, "ControlPlaneEndpoint"},
		{"token empty", false, func(p *JoinParams) { p.Token = "" }, "Token"},
		{"token malformed", false, func(p *JoinParams) { p.Token = "abcdef.0123456789ABCDEF" }, "Token"},
		{"hash empty", false, func(p *JoinParams) { p.CACertHash = "" }, "CACertHash"},
		{"hash without prefix", false, func(p *JoinParams) { p.CACertHash = strings.TrimPrefix(testHash, "sha256:") }, "CACertHash"},
		{"hash other algorithm", false, func(p *JoinParams) { p.CACertHash = "sha512:" + strings.TrimPrefix(testHash, "sha256:") }, "CACertHash"},
		{"hash short", false, func(p *JoinParams) { p.CACertHash = testHash[:len(testHash)-1] }, "CACertHash"},
		{"hash uppercase hex", false, func(p *JoinParams) { p.CACertHash = strings.ToUpper(testHash[:9]) + testHash[9:] }, "CACertHash"},
		{"hash not hex", false, func(p *JoinParams) { p.CACertHash = testHash[:len(testHash)-1] + "g" }, "CACertHash"},
		{"control plane without advertise address", true, func(p *JoinParams) { p.AdvertiseAddress = "" }, "AdvertiseAddress"},
		{"control plane advertise address name", true, func(p *JoinParams) { p.AdvertiseAddress = "cp2" }, "AdvertiseAddress"},
		{"control plane advertise address unspecified", true, func(p *JoinParams) { p.AdvertiseAddress = "::" }, "AdvertiseAddress"},
		{"worker advertise address malformed", false, func(p *JoinParams) { p.AdvertiseAddress = "10.0.0.300" }, "AdvertiseAddress"},
		{"cri socket bare path", false, func(p *JoinParams) { p.CRISocket = "/run/containerd/containerd.sock" }, "CRISocket"},
		{"cri socket other scheme", true, func(p *JoinParams) { p.CRISocket = "tcp://10.0.0.1:1234" }, "CRISocket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validJoin(tt.controlPlane)
			tt.mutate(&p)
			out, err := RenderJoin(p)
			checkParamError(t, out, err, tt.field)
		})
	}
}

func checkParamError(t *testing.T, out []byte, err error, field string) {
	t.Helper()
	var pe *ParamError
	if !errors.As(err, &pe) {
		t.Fatalf("got err %v and output\n%s\nwant a *ParamError for %s", err, out, field)
	}
	if pe.Field != field {
		t.Errorf("ParamError.Field = %q, want %q (message: %s)", pe.Field, field, pe.Message)
	}
	if pe.Message == "" || !strings.Contains(pe.Error(), field) {
		t.Errorf("Error() = %q, want a message naming %s", pe.Error(), field)
	}
	if out != nil {
		t.Errorf("got output alongside the error:\n%s", out)
	}
}

// TestTokenNotInErrors keeps secrets out of error messages, which end up in step updates
// and logs.
func TestTokenNotInErrors(t *testing.T) {
	const secretish = "abcdef.0123456789ABCDEF"
	p := validInit()
	p.BootstrapToken = secretish
	_, err := RenderInit(p)
	if err == nil || strings.Contains(err.Error(), "0123456789") {
		t.Errorf("RenderInit error = %v, want an error that does not repeat the token", err)
	}
	j := validJoin(false)
	j.Token = secretish
	_, err = RenderJoin(j)
	if err == nil || strings.Contains(err.Error(), "0123456789") {
		t.Errorf("RenderJoin error = %v, want an error that does not repeat the token", err)
	}
}

func TestRenderAcceptsIPv6AndNames(t *testing.T) {
	p := validInit()
	p.AdvertiseAddress = "fd00::11"
	p.ControlPlaneEndpoint = "[fd00::10]:6443"
	p.PodSubnet = "fd00:10:244::/56"
	p.ServiceSubnet = "fd00:10:96::/112"
	p.CertSANs = []string{"fd00::10", "localhost"}
	if _, err := RenderInit(p); err != nil {
		t.Errorf("IPv6 init: %v", err)
	}
	j := validJoin(true)
	j.ControlPlaneEndpoint = "api.example.com:443"
	j.AdvertiseAddress = "fd00::12"
	if _, err := RenderJoin(j); err != nil {
		t.Errorf("IPv6 join: %v", err)
	}
}
