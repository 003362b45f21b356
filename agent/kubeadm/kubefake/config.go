package kubefake

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// The kubeadm.k8s.io/v1beta4 configuration types, written from the API's documented
// fields (kubeadm v1.37: cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go). Every field the
// real API has is here, so a valid config is never refused for using one; anything else is
// an unknown field.

const kubeadmGroupVersion = "kubeadm.k8s.io/v1beta4"

type typeMeta struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
}

type initConfiguration struct {
	typeMeta
	BootstrapTokens  []bootstrapToken        `json:"bootstrapTokens,omitempty"`
	DryRun           bool                    `json:"dryRun,omitempty"`
	NodeRegistration nodeRegistrationOptions `json:"nodeRegistration,omitempty"`
	LocalAPIEndpoint apiEndpoint             `json:"localAPIEndpoint,omitempty"`
	CertificateKey   string                  `json:"certificateKey,omitempty"`
	SkipPhases       []string                `json:"skipPhases,omitempty"`
	Patches          *patches                `json:"patches,omitempty"`
	Timeouts         *timeouts               `json:"timeouts,omitempty"`
}

type clusterConfiguration struct {
	typeMeta
	Etcd                        etcd                  `json:"etcd,omitempty"`
	Networking                  networking            `json:"networking,omitempty"`
	KubernetesVersion           string                `json:"kubernetesVersion,omitempty"`
	ControlPlaneEndpoint        string                `json:"controlPlaneEndpoint,omitempty"`
	APIServer                   apiServer             `json:"apiServer,omitempty"`
	ControllerManager           controlPlaneComponent `json:"controllerManager,omitempty"`
	Scheduler                   controlPlaneComponent `json:"scheduler,omitempty"`
	DNS                         dns                   `json:"dns,omitempty"`
	Proxy                       proxy                 `json:"proxy,omitempty"`
	CertificatesDir             string                `json:"certificatesDir,omitempty"`
	ImageRepository             string                `json:"imageRepository,omitempty"`
	FeatureGates                map[string]bool       `json:"featureGates,omitempty"`
	ClusterName                 string                `json:"clusterName,omitempty"`
	EncryptionAlgorithm         string                `json:"encryptionAlgorithm,omitempty"`
	CertificateValidityPeriod   *duration             `json:"certificateValidityPeriod,omitempty"`
	CACertificateValidityPeriod *duration             `json:"caCertificateValidityPeriod,omitempty"`
}

type joinConfiguration struct {
	typeMeta
	DryRun           bool                    `json:"dryRun,omitempty"`
	NodeRegistration nodeRegistrationOptions `json:"nodeRegistration,omitempty"`
	CACertPath       string                  `json:"caCertPath,omitempty"`
	Discovery        discovery               `json:"discovery"`
	ControlPlane     *joinControlPlane       `json:"controlPlane,omitempty"`
	SkipPhases       []string                `json:"skipPhases,omitempty"`
	Patches          *patches                `json:"patches,omitempty"`
	Timeouts         *timeouts               `json:"timeouts,omitempty"`
}

type bootstrapToken struct {
	Token       string     `json:"token"`
	Description string     `json:"description,omitempty"`
	TTL         *duration  `json:"ttl,omitempty"`
	Expires     *time.Time `json:"expires,omitempty"`
	Usages      []string   `json:"usages,omitempty"`
	Groups      []string   `json:"groups,omitempty"`
}

type nodeRegistrationOptions struct {
	Name                  string   `json:"name,omitempty"`
	CRISocket             string   `json:"criSocket,omitempty"`
	Taints                []taint  `json:"taints"`
	KubeletExtraArgs      []arg    `json:"kubeletExtraArgs,omitempty"`
	IgnorePreflightErrors []string `json:"ignorePreflightErrors,omitempty"`
	ImagePullPolicy       string   `json:"imagePullPolicy,omitempty"`
	ImagePullSerial       *bool    `json:"imagePullSerial,omitempty"`
}

type taint struct {
	Key       string     `json:"key"`
	Value     string     `json:"value,omitempty"`
	Effect    string     `json:"effect"`
	TimeAdded *time.Time `json:"timeAdded,omitempty"`
}

type apiEndpoint struct {
	AdvertiseAddress string `json:"advertiseAddress,omitempty"`
	BindPort         int32  `json:"bindPort,omitempty"`
}

type controlPlaneComponent struct {
	ExtraArgs    []arg           `json:"extraArgs,omitempty"`
	ExtraVolumes []hostPathMount `json:"extraVolumes,omitempty"`
	ExtraEnvs    []envVar        `json:"extraEnvs,omitempty"`
}

type apiServer struct {
	controlPlaneComponent
	CertSANs []string `json:"certSANs,omitempty"`
}

type imageMeta struct {
	ImageRepository string `json:"imageRepository,omitempty"`
	ImageTag        string `json:"imageTag,omitempty"`
}

type dns struct {
	imageMeta
	Disabled bool `json:"disabled,omitempty"`
}

type proxy struct {
	Disabled bool `json:"disabled,omitempty"`
}

type networking struct {
	ServiceSubnet string `json:"serviceSubnet,omitempty"`
	PodSubnet     string `json:"podSubnet,omitempty"`
	DNSDomain     string `json:"dnsDomain,omitempty"`
}

type etcd struct {
	Local    *localEtcd    `json:"local,omitempty"`
	External *externalEtcd `json:"external,omitempty"`
}

type localEtcd struct {
	imageMeta
	DataDir        string   `json:"dataDir"`
	ExtraArgs      []arg    `json:"extraArgs,omitempty"`
	ExtraEnvs      []envVar `json:"extraEnvs,omitempty"`
	ServerCertSANs []string `json:"serverCertSANs,omitempty"`
	PeerCertSANs   []string `json:"peerCertSANs,omitempty"`
}

type externalEtcd struct {
	Endpoints     []string `json:"endpoints"`
	HTTPEndpoints []string `json:"httpEndpoints,omitempty"`
	CAFile        string   `json:"caFile"`
	CertFile      string   `json:"certFile"`
	KeyFile       string   `json:"keyFile"`
}

type joinControlPlane struct {
	LocalAPIEndpoint apiEndpoint `json:"localAPIEndpoint,omitempty"`
	CertificateKey   string      `json:"certificateKey,omitempty"`
}

type discovery struct {
	BootstrapToken    *bootstrapTokenDiscovery `json:"bootstrapToken,omitempty"`
	File              *fileDiscovery           `json:"file,omitempty"`
	TLSBootstrapToken string                   `json:"tlsBootstrapToken,omitempty"`
}

type bootstrapTokenDiscovery struct {
	Token                    string   `json:"token"`
	APIServerEndpoint        string   `json:"apiServerEndpoint,omitempty"`
	CACertHashes             []string `json:"caCertHashes,omitempty"`
	UnsafeSkipCAVerification bool     `json:"unsafeSkipCAVerification,omitempty"`
}

type fileDiscovery struct {
	KubeConfigPath string `json:"kubeConfigPath"`
}

type hostPathMount struct {
	Name      string `json:"name"`
	HostPath  string `json:"hostPath"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	PathType  string `json:"pathType,omitempty"`
}

type patches struct {
	Directory string `json:"directory,omitempty"`
}

type arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// envVar is core/v1 EnvVar; valueFrom's many sources are kept opaque because the fake
// never interprets them.
type envVar struct {
	Name      string          `json:"name"`
	Value     string          `json:"value,omitempty"`
	ValueFrom json.RawMessage `json:"valueFrom,omitempty"`
}

type timeouts struct {
	ControlPlaneComponentHealthCheck *duration `json:"controlPlaneComponentHealthCheck,omitempty"`
	KubeletHealthCheck               *duration `json:"kubeletHealthCheck,omitempty"`
	KubernetesAPICall                *duration `json:"kubernetesAPICall,omitempty"`
	EtcdAPICall                      *duration `json:"etcdAPICall,omitempty"`
	TLSBootstrap                     *duration `json:"tlsBootstrap,omitempty"`
	Discovery                        *duration `json:"discovery,omitempty"`
	UpgradeManifests                 *duration `json:"upgradeManifests,omitempty"`
}

// duration is metav1.Duration: a Go duration string such as "10m0s".
type duration struct{ time.Duration }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// gvk names a document's type the way apimachinery prints schema.GroupVersionKind, since
// kubeadm's messages quote it that way.
type gvk struct{ group, version, kind string }

func (g gvk) goString() string {
	return fmt.Sprintf("schema.GroupVersionKind{Group:%q, Version:%q, Kind:%q}", g.group, g.version, g.kind)
}

func (g gvk) plusV() string {
	return fmt.Sprintf("{Group:%s Version:%s Kind:%s}", g.group, g.version, g.kind)
}

func (g gvk) groupVersion() string {
	if g.group == "" {
		return g.version
	}
	return g.group + "/" + g.version
}

// document is one YAML document of a multi-document file, converted to JSON.
type document struct {
	gvk  gvk
	json []byte
}

// splitDocuments splits a kubeadm config file into documents keyed by kind, refusing what
// kubeadm's SplitConfigDocuments refuses: a document without apiVersion or kind, and a
// kind given twice.
func splitDocuments(data []byte) ([]document, error) {
	var docs []document
	seen := map[string]bool{}
	var dup []string
	for _, raw := range splitYAML(data) {
		j, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return nil, err
		}
		if isEmptyJSON(j) {
			continue
		}
		var tm typeMeta
		if err := json.Unmarshal(j, &tm); err != nil {
			return nil, fmt.Errorf("couldn't get version/kind; json parse error: %w", err)
		}
		g := parseGVK(tm)
		if g.group == "" || g.version == "" || g.kind == "" {
			return nil, fmt.Errorf("invalid configuration for GroupVersionKind %s: kind and apiVersion is mandatory information that must be specified", g.plusV())
		}
		if seen[g.kind] {
			dup = append(dup, fmt.Sprintf("invalid configuration: kind %q is specified twice in YAML file", g.kind))
			continue
		}
		seen[g.kind] = true
		docs = append(docs, document{gvk: g, json: j})
	}
	if len(dup) == 1 {
		return nil, errors.New(dup[0])
	}
	if len(dup) > 1 {
		return nil, fmt.Errorf("[%s]", strings.Join(dup, ", "))
	}
	// kubeadm decodes in GVK order, so ClusterConfiguration errors come first.
	sort.Slice(docs, func(i, j int) bool { return docs[i].gvk.kind < docs[j].gvk.kind })
	return docs, nil
}

// splitYAML splits on "---" lines the way apimachinery's YAMLReader does: a line starting
// with "---" followed by nothing or a comment ends a document.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "---"); ok {
			if t := strings.TrimSpace(rest); t == "" || strings.HasPrefix(t, "#") {
				docs = append(docs, append([]byte(nil), cur.Bytes()...))
				cur.Reset()
				continue
			}
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	docs = append(docs, cur.Bytes())
	return docs
}

func isEmptyJSON(j []byte) bool {
	t := string(bytes.TrimSpace(j))
	return t == "" || t == "null" || t == "{}"
}

func parseGVK(tm typeMeta) gvk {
	group, version, found := strings.Cut(tm.APIVersion, "/")
	if !found {
		group, version = "", tm.APIVersion
	}
	return gvk{group: group, version: version, kind: tm.Kind}
}

// oldKubeadmAPIs are the API versions kubeadm v1.37 no longer reads, with the last kubeadm
// that did, as kubeadm's own refusal names it.
var oldKubeadmAPIs = map[string]string{
	"kubeadm.k8s.io/v1alpha1": "v1.11",
	"kubeadm.k8s.io/v1alpha2": "v1.12",
	"kubeadm.k8s.io/v1alpha3": "v1.14",
	"kubeadm.k8s.io/v1beta1":  "v1.15",
	"kubeadm.k8s.io/v1beta2":  "v1.22",
	"kubeadm.k8s.io/v1beta3":  "v1.36",
}

// checkAPIVersion refuses the kubeadm API versions kubeadm v1.37 refuses.
func checkAPIVersion(g gvk) error {
	gv := g.groupVersion()
	if last, ok := oldKubeadmAPIs[gv]; ok {
		return fmt.Errorf("your configuration file uses an old API spec: %q (kind: %q). Please use kubeadm %s instead and run 'kubeadm config migrate --old-config old-config-file --new-config new-config-file', which will write the new, similar spec using a newer API version.", gv, g.kind, last)
	}
	if gv == "kubeadm.k8s.io/v1" {
		return fmt.Errorf("experimental API spec: %q (kind: %q) is not allowed. You can use the --allow-experimental-api flag if the command supports it.", gv, g.kind)
	}
	return nil
}

// decodeStrict checks a document's API version and decodes it into out, refusing unknown
// fields. Real kubeadm only warns about unknown fields; the fake refuses them because a
// misspelt field in a rendered config is a bug the real tool would hide.
func decodeStrict(doc document, out any) error {
	if err := checkAPIVersion(doc.gvk); err != nil {
		return err
	}
	var generic any
	if err := json.Unmarshal(doc.json, &generic); err != nil {
		return fmt.Errorf("error unmarshaling configuration %s: %w", doc.gvk.goString(), err)
	}
	if unknown := unknownFields(reflect.TypeOf(out).Elem(), generic, ""); len(unknown) > 0 {
		msgs := make([]string, len(unknown))
		for i, f := range unknown {
			msgs[i] = fmt.Sprintf("unknown field %q", f)
		}
		return fmt.Errorf("error unmarshaling configuration %s: strict decoding error: %s", doc.gvk.goString(), strings.Join(msgs, ", "))
	}
	if err := json.Unmarshal(doc.json, out); err != nil {
		return fmt.Errorf("error unmarshaling configuration %s: %w", doc.gvk.goString(), err)
	}
	return nil
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// unknownFields walks a decoded JSON value against the Go type it will be decoded into and
// returns the paths of keys the type lacks, spelt as apimachinery's strict decoder spells
// them ("nodeRegistration.foo", "bootstrapTokens[0].bar"). Keys match case-sensitively, as
// in the strict decoder, although encoding/json itself would accept "Name" for "name".
func unknownFields(t reflect.Type, v any, path string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || t == reflect.TypeFor[json.RawMessage]() {
		return nil
	}
	var out []string
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil // a type mismatch; json.Unmarshal reports it
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			child := fieldPath(path, k)
			ft, ok := fields[k]
			if !ok {
				out = append(out, child)
				continue
			}
			out = append(out, unknownFields(ft, obj[k], child)...)
		}
	case reflect.Slice, reflect.Array:
		items, _ := v.([]any)
		for i, item := range items {
			out = append(out, unknownFields(t.Elem(), item, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case reflect.Map:
		obj, _ := v.(map[string]any)
		for k, item := range obj {
			out = append(out, unknownFields(t.Elem(), item, fieldPath(path, k))...)
		}
	}
	return out
}

func fieldPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// jsonFields maps a struct's JSON keys to field types, flattening embedded structs the way
// encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, ft := range jsonFields(f.Type) {
				m[k] = ft
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}
