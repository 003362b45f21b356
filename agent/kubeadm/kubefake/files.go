package kubefake

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Where kubeadm keeps things on the host (cmd/kubeadm/app/constants).
const (
	kubernetesDir    = "/etc/kubernetes"
	manifestsDir     = "/etc/kubernetes/manifests"
	kubeletDir       = "/var/lib/kubelet"
	kubeletConfig    = "/var/lib/kubelet/config.yaml"
	kubeletFlagsEnv  = "/var/lib/kubelet/kubeadm-flags.env"
	adminConf        = "/etc/kubernetes/admin.conf"
	superAdminConf   = "/etc/kubernetes/super-admin.conf"
	kubeletConf      = "/etc/kubernetes/kubelet.conf"
	bootstrapKubelet = "/etc/kubernetes/bootstrap-kubelet.conf"
	controllerConf   = "/etc/kubernetes/controller-manager.conf"
	schedulerConf    = "/etc/kubernetes/scheduler.conf"
	etcdImageTag     = "3.6.5-0"
)

// controlPlaneComponents are the static Pods kubeadm writes on a control plane, in the
// order its preflight checks their manifests.
var controlPlaneComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"}

func manifestPath(component string) string { return path.Join(manifestsDir, component+".yaml") }

// fileAvailableName is the name kubeadm gives a FileAvailableCheck of a path.
func fileAvailableName(p string) string {
	return "FileAvailable-" + strings.ReplaceAll(p, "/", "-")
}

func dirAvailableName(p string) string {
	return "DirAvailable-" + strings.ReplaceAll(p, "/", "-")
}

// nodeSetup is what the kubelet and static Pod files of one node depend on.
type nodeSetup struct {
	nodeName      string
	advertise     string
	bindPort      int
	criSocket     string
	certDir       string
	etcdDataDir   string
	serviceSubnet string
	podSubnet     string
	dnsDomain     string
	imageRepo     string
	version       string
	controlPlane  bool
	// etcdPeers is the initial-cluster of a joining etcd member: the existing members plus
	// this one, "name=https://ip:2380".
	etcdPeers []string
}

// firstServiceIP is the first address of the first service subnet: the kubernetes
// Service's cluster IP, which kubeadm puts in the API server certificate.
func firstServiceIP(subnets string, offset int) net.IP {
	first, _, _ := strings.Cut(subnets, ",")
	pfx, err := netip.ParsePrefix(strings.TrimSpace(first))
	if err != nil {
		return nil
	}
	a := pfx.Masked().Addr()
	for range offset {
		a = a.Next()
	}
	return net.IP(a.AsSlice())
}

func (n nodeSetup) image(component string) string {
	if component == "etcd" {
		return n.imageRepo + "/etcd:" + etcdImageTag
	}
	return n.imageRepo + "/" + component + ":" + n.version
}

// staticPod renders a control-plane static Pod manifest like kubeadm's (trimmed of probes
// and volumes, which nothing reads from the fake).
func (n nodeSetup) staticPod(component string) ([]byte, error) {
	var command []string
	annotations := map[string]string{}
	cd := n.certDir
	switch component {
	case "kube-apiserver":
		annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"] = net.JoinHostPort(n.advertise, fmt.Sprint(n.bindPort))
		command = []string{"kube-apiserver",
			"--advertise-address=" + n.advertise,
			"--allow-privileged=true",
			"--authorization-mode=Node,RBAC",
			"--client-ca-file=" + cd + "/ca.crt",
			"--enable-admission-plugins=NodeRestriction",
			"--enable-bootstrap-token-auth=true",
			"--etcd-cafile=" + cd + "/etcd/ca.crt",
			"--etcd-servers=https://127.0.0.1:2379",
			"--requestheader-client-ca-file=" + cd + "/front-proxy-ca.crt",
			fmt.Sprintf("--secure-port=%d", n.bindPort),
			"--service-account-issuer=https://kubernetes.default.svc." + n.dnsDomain,
			"--service-account-key-file=" + cd + "/sa.pub",
			"--service-account-signing-key-file=" + cd + "/sa.key",
			"--service-cluster-ip-range=" + n.serviceSubnet,
			"--tls-cert-file=" + cd + "/apiserver.crt",
			"--tls-private-key-file=" + cd + "/apiserver.key",
		}
	case "kube-controller-manager":
		command = []string{"kube-controller-manager",
			"--bind-address=127.0.0.1",
			"--client-ca-file=" + cd + "/ca.crt",
			"--cluster-name=kubernetes",
			"--cluster-signing-cert-file=" + cd + "/ca.crt",
			"--cluster-signing-key-file=" + cd + "/ca.key",
			"--controllers=*,bootstrapsigner,tokencleaner",
			"--kubeconfig=" + controllerConf,
			"--leader-elect=true",
			"--root-ca-file=" + cd + "/ca.crt",
			"--service-account-private-key-file=" + cd + "/sa.key",
			"--service-cluster-ip-range=" + n.serviceSubnet,
			"--use-service-account-credentials=true",
		}
		if n.podSubnet != "" {
			command = append(command, "--allocate-node-cidrs=true", "--cluster-cidr="+n.podSubnet)
		}
	case "kube-scheduler":
		command = []string{"kube-scheduler",
			"--bind-address=127.0.0.1",
			"--kubeconfig=" + schedulerConf,
			"--leader-elect=true",
		}
	case "etcd":
		peer := "https://" + net.JoinHostPort(n.advertise, "2380")
		annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"] = "https://" + net.JoinHostPort(n.advertise, "2379")
		initial := n.nodeName + "=" + peer
		state := "new"
		if len(n.etcdPeers) > 0 {
			initial, state = strings.Join(n.etcdPeers, ","), "existing"
		}
		command = []string{"etcd",
			"--advertise-client-urls=https://" + net.JoinHostPort(n.advertise, "2379"),
			"--cert-file=" + cd + "/etcd/server.crt",
			"--data-dir=" + n.etcdDataDir,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=" + initial,
			"--initial-cluster-state=" + state,
			"--key-file=" + cd + "/etcd/server.key",
			"--listen-client-urls=https://127.0.0.1:2379,https://" + net.JoinHostPort(n.advertise, "2379"),
			"--listen-peer-urls=" + peer,
			"--name=" + n.nodeName,
			"--trusted-ca-file=" + cd + "/etcd/ca.crt",
		}
	}
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"annotations": annotations,
			"labels":      map[string]string{"component": component, "tier": "control-plane"},
			"name":        component,
			"namespace":   "kube-system",
		},
		"spec": map[string]any{
			"containers": []map[string]any{{
				"command":         command,
				"image":           n.image(component),
				"imagePullPolicy": "IfNotPresent",
				"name":            component,
			}},
			"hostNetwork":       true,
			"priority":          2000001000,
			"priorityClassName": "system-node-critical",
		},
		"status": map[string]any{},
	}
	return yaml.Marshal(pod)
}

// kubeletConfigYAML is the KubeletConfiguration kubeadm writes to /var/lib/kubelet.
func (n nodeSetup) kubeletConfigYAML() ([]byte, error) {
	dnsIP := firstServiceIP(n.serviceSubnet, 10)
	cfg := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"cacheTTL": "0s", "enabled": true},
			"x509":      map[string]any{"clientCAFile": n.certDir + "/ca.crt"},
		},
		"authorization":      map[string]any{"mode": "Webhook"},
		"cgroupDriver":       "systemd",
		"clusterDNS":         []string{dnsIP.String()},
		"clusterDomain":      n.dnsDomain,
		"rotateCertificates": true,
		"staticPodPath":      manifestsDir,
	}
	return yaml.Marshal(cfg)
}

// kubeletFlags is kubeadm-flags.env: the flags kubeadm passes the kubelet per node.
func (n nodeSetup) kubeletFlags() []byte {
	args := []string{"--container-runtime-endpoint=" + n.criSocket, "--hostname-override=" + n.nodeName}
	if n.controlPlane && n.advertise != "" {
		args = append(args, "--node-ip="+n.advertise)
	}
	return fmt.Appendf(nil, "KUBELET_KUBEADM_ARGS=%q\n", strings.Join(args, " "))
}

// apiServerSANs are the names kubeadm puts in the API server's serving certificate.
func (n nodeSetup) apiServerSANs(endpoint string, extra []string) ([]string, []net.IP) {
	dnsNames := []string{n.nodeName, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + n.dnsDomain}
	ips := []net.IP{firstServiceIP(n.serviceSubnet, 1), net.ParseIP(n.advertise)}
	host, _, err := net.SplitHostPort(endpoint)
	if err == nil {
		extra = append([]string{host}, extra...)
	}
	for _, s := range extra {
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if !slices.Contains(dnsNames, s) {
			dnsNames = append(dnsNames, s)
		}
	}
	return dnsNames, ips
}
