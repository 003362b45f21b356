package steps

import (
	"maps"
	"strings"
	"testing"
)

// TestDay2Params: every parameter of the etcd, upgrade and uncordon steps comes from the
// network and is checked before anything runs; each bad value is invalid_params.
func TestDay2Params(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	arts := "kubeadm=" + sum + ":10,kubelet=" + sum + ":20,kubectl=" + sum + ":30"
	base := map[string]params{
		"etcd-check":    {"node_name": "cp-1"},
		"etcd-cleanup":  {"node_name": "cp-2", "exec_node": "cp-1", "peer_url": "https://10.0.0.2:2380"},
		"etcd-remove":   {"node_name": "cp-2", "exec_node": "cp-1", "peer_url": "https://10.0.0.2:2380", "member_id": "8e9e05c52164694d"},
		"upgrade-apply": {"role": "control-plane-init", "kubernetes_version": "v1.38.0", "artifacts": arts, "artifact_urls": "http://10.0.0.1:8080,https://c2:8443"},
		"upgrade-node":  {"role": "worker", "kubernetes_version": "v1.38.0", "artifacts": arts, "artifact_urls": "http://10.0.0.1:8080"},
		"uncordon":      {"node_name": "w-1"},
	}
	for name, p := range base {
		if _, err := stepTable[name](p, nil); err != nil {
			t.Errorf("%s with good parameters: %v", name, err)
		}
	}
	bad := []struct {
		step, key, value string
	}{
		{"etcd-check", "node_name", ""},
		{"etcd-check", "node_name", "Bad_Name"},
		{"etcd-cleanup", "peer_url", ""},
		{"etcd-cleanup", "peer_url", "http://10.0.0.2:2380"},
		{"etcd-cleanup", "peer_url", "https://10.0.0.2:2380/x"},
		{"etcd-cleanup", "peer_url", "https://u:p@10.0.0.2:2380"},
		{"etcd-cleanup", "exec_node", ""},
		{"etcd-remove", "exec_node", "cp-2"}, // the leaving node cannot remove itself
		{"etcd-remove", "member_id", "8E9E"},
		{"etcd-remove", "member_id", "123456789abcdef01"},
		{"etcd-remove", "member_id", "; rm -rf /"},
		{"upgrade-apply", "role", "worker"},
		{"upgrade-apply", "kubernetes_version", "1.38"},
		{"upgrade-apply", "artifacts", ""},
		{"upgrade-apply", "artifacts", "kubeadm=" + sum + ":10,kubelet=" + sum + ":20"},
		{"upgrade-apply", "artifacts", arts + ",kubeadm=" + sum + ":10"},
		{"upgrade-apply", "artifacts", strings.Replace(arts, "kubeadm", "sh", 1)},
		{"upgrade-apply", "artifacts", strings.Replace(arts, ":10", ":-1", 1)},
		{"upgrade-apply", "artifacts", strings.Replace(arts, sum, "../../etc/passwd", 1)},
		{"upgrade-node", "artifact_urls", ""},
		{"upgrade-node", "artifact_urls", "ftp://10.0.0.1"},
		{"upgrade-node", "artifact_urls", "http://10.0.0.1:8080/other/path"},
		{"upgrade-node", "artifact_urls", "http://10.0.0.1:8080?x=1"},
		{"uncordon", "node_name", ""},
	}
	for _, b := range bad {
		p := maps.Clone(base[b.step])
		p[b.key] = b.value
		_, err := stepTable[b.step](p, nil)
		if err == nil || reasonOf(err) != reasonInvalidParams {
			t.Errorf("%s with %s=%q: %v, want invalid_params", b.step, b.key, b.value, err)
		}
	}
}
