package kubefake

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"
)

// tokenCreate runs `kubeadm token create [TOKEN] --ttl D --kubeconfig K [--description ..]
// [--usages ..] [--groups ..]`: it creates the bootstrap token Secret through the API
// server K points at, with K's credentials.
func (r *run) tokenCreate(p parsed) error {
	r.dryRun = p.boolean("dry-run")
	var t tokenSpec
	if len(p.args) > 0 {
		m := tokenRE.FindStringSubmatch(p.args[0])
		if m == nil {
			return fmt.Errorf("the bootstrap token %q was not of the form %q", p.args[0], tokenPattern)
		}
		t.id, t.secret = m[1], m[2]
	} else {
		var err error
		if t, err = randomToken(); err != nil {
			return err
		}
	}
	t.ttl = defaultTokenTTL
	if d, ok := p.duration("ttl"); ok {
		t.ttl = d
	}
	t.description = p.str("description")
	t.usages, t.groups = p.slice("usages"), p.slice("groups")
	if !p.has("usages") {
		t.usages = []string{"signing", "authentication"}
	}
	if !p.has("groups") {
		t.groups = []string{defaultNodeGroup}
	}
	var fe fieldErrors
	if msg := checkTokenUsages(t.usages); msg != "" {
		fe.invalid("bootstrapTokens[0].usages", t.usages, msg)
	}
	if msg := checkTokenGroups(t.usages, t.groups); msg != "" {
		fe.invalid("bootstrapTokens[0].groups", t.groups, msg)
	}
	if err := fe.err(); err != nil {
		return err
	}

	kcPath, data, err := r.readKubeconfig(p, "/etc/kubernetes/admin.conf")
	if err != nil {
		return fmt.Errorf("failed to load admin kubeconfig: %w", err)
	}
	cc, err := parseKubeconfig(data)
	if err != nil {
		return fmt.Errorf("failed to load admin kubeconfig: %w", err)
	}
	node, err := r.ownerNode(kcPath, cc)
	if err != nil {
		return err
	}
	fail, err := r.store.consumeFailure("token create", node)
	if err != nil {
		return err
	}
	if err := r.phase("token/create"); err != nil {
		return err
	}
	secretErr := func(err error) error {
		return fmt.Errorf("failed to create or update bootstrap token with name bootstrap-token-%s: unable to create Secret: %w", t.id, err)
	}
	postErr := func(err error) error {
		return secretErr(fmt.Errorf("Post \"https://%s/api/v1/namespaces/kube-system/secrets?timeout=10s\": %w", cc.endpoint, err))
	}
	if fail {
		return postErr(connectionRefused(cc.endpoint))
	}
	now := time.Now()
	err = r.store.update(func(st *fakeState) error {
		cl := st.clusterAt(cc.endpoint)
		if cl == nil {
			return postErr(connectionRefused(cc.endpoint))
		}
		user, groups, err := authenticate(cl, cc)
		if errors.Is(err, errUnknownAuthority) {
			return postErr(err)
		}
		if err != nil {
			return secretErr(err)
		}
		if !isAdmin(groups) {
			return secretErr(fmt.Errorf("secrets is forbidden: User %q cannot create resource \"secrets\" in API group \"\" in the namespace \"kube-system\"", user))
		}
		// The token cleaner deletes expired tokens, so only a live one is in the way.
		if old, ok := cl.Tokens[t.id]; ok && old.valid(now) {
			return fmt.Errorf("a token with id %q already exists", t.id)
		}
		if r.dryRun {
			return nil
		}
		if cl.Tokens == nil {
			cl.Tokens = map[string]tokenRecord{}
		}
		cl.Tokens[t.id] = t.record(now)
		return nil
	})
	if err != nil {
		return err
	}
	r.println(t.String())
	return nil
}

// readKubeconfig reads --kubeconfig (or the default). Under --rootfs the path is inside
// the root, as for a chrooted kubeadm; otherwise it is a host path, only ever read.
// It returns the file's absolute host path, which names its owner in the state.
func (r *run) readKubeconfig(p parsed, def string) (string, []byte, error) {
	kc := p.str("kubeconfig")
	if kc == "" {
		kc = def
	}
	if p.has("rootfs") {
		h, err := openHostFS(r.abs(p.str("rootfs")))
		if err != nil {
			return "", nil, fmt.Errorf("unable to chroot to %s: %w", p.str("rootfs"), unwrapPathErr(err))
		}
		defer h.Close()
		b, err := h.readFile(path.Join("/", kc))
		return h.hostPath(path.Join("/", kc)), b, err
	}
	abs := r.abs(kc)
	b, err := os.ReadFile(abs)
	return abs, b, err
}

// ownerNode names the node a kubeconfig was written for: the state remembers init's and
// join's files, and a kubelet's client certificate names its node.
func (r *run) ownerNode(hostPath string, cc *clientConfig) (string, error) {
	var node string
	err := r.store.view(func(st *fakeState) error {
		node = st.Kubeconfigs[hostPath].Node
		return nil
	})
	if node == "" && cc.cert != nil {
		if n, ok := strings.CutPrefix(cc.cert.Subject.CommonName, "system:node:"); ok {
			node = n
		}
	}
	return node, err
}
