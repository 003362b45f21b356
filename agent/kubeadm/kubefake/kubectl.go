package kubefake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// readyJSONPath is the only jsonpath the fake evaluates: the node's Ready condition, as
// the ready step asks for it.
const readyJSONPath = `jsonpath={.status.conditions[?(@.type=="Ready")].status}`

// kubectl dispatches a kubectl command line.
func (r *run) kubectl(args []string) int {
	if err := r.logInvocation("kubectl", args); err != nil {
		fmt.Fprintf(r.errOut, "fakekube: %v\n", err)
		return exitError
	}
	words, rest, bad := splitCommand(args, kubectlCommands, kubectlRootFlags)
	if bad != "" {
		_, err := parseFlags(&command{tool: "kubectl"}, kubectlRootFlags, kubectlRootUnsimulated, []string{bad})
		return r.finishKubectl(&usageError{err: err, path: "kubectl"})
	}
	var cmd *command
	for _, c := range kubectlCommands {
		if len(words) > 0 && c.name == words[0] {
			cmd = c
		}
	}
	switch {
	case len(words) == 0:
		return r.finishKubectl(notSimulated("kubectl without a command"))
	case cmd == nil && slices.Contains(kubectlUnsimulatedCommands, words[0]):
		return r.finishKubectl(notSimulated("kubectl " + words[0]))
	case cmd == nil:
		return r.finishKubectl(fmt.Errorf("unknown command %q for %q", words[0], "kubectl"))
	}
	p, err := parseFlags(cmd, kubectlRootFlags, kubectlRootUnsimulated, rest)
	if err != nil {
		return r.finishKubectl(&usageError{err: err, path: cmd.path()})
	}
	// Every kubectl command takes --namespace; only exec, which reaches a kube-system pod,
	// needs it here, so elsewhere it is refused as the unsimulated flag it used to be.
	if p.has("namespace") && cmd.name != "exec" {
		return r.finishKubectl(&usageError{err: notSimulatedFlag(&command{tool: "kubectl"}, spelling(args, "namespace", "n")), path: "kubectl"})
	}
	switch cmd.name {
	case "apply":
		err = r.apply(p)
	case "get":
		err = r.get(p)
	case "drain":
		err = r.drain(p)
	case "delete":
		err = r.deleteNode(p)
	case "uncordon":
		err = r.uncordon(p)
	case "exec":
		err = r.exec(p)
	}
	return r.finishKubectl(err)
}

// spelling is how a flag was written on the command line ("-n" or "--namespace"), for
// messages that name it.
func spelling(args []string, long, short string) string {
	for _, a := range args {
		if a == "--" {
			break
		}
		if name, _, _ := strings.Cut(a, "="); name == "--"+long {
			return name
		}
		if short != "" && strings.HasPrefix(a, "-"+short) && !strings.HasPrefix(a, "--") {
			return "-" + short
		}
	}
	return "--" + long
}

// client is what kubectl resolves before talking to the API server.
type client struct {
	cc   *clientConfig
	node string // the node the kubeconfig belongs to, for FailNext
}

func (r *run) kubectlClient(p parsed) (*client, error) {
	if !p.has("kubeconfig") {
		// No kubeconfig and no in-cluster config: kubectl falls back to localhost:8080.
		return nil, &kubectlError{"The connection to the server localhost:8080 was refused - did you specify the right host or port?"}
	}
	path := r.abs(p.str("kubeconfig"))
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("stat %s: no such file or directory", path)
		}
		return nil, err
	}
	cc, err := parseKubeconfig(data)
	if err != nil {
		return nil, fmt.Errorf("error loading config file %q: %w", path, err)
	}
	node, err := r.ownerNode(path, cc)
	if err != nil {
		return nil, err
	}
	return &client{cc: cc, node: node}, nil
}

func refused(endpoint string) error {
	return &kubectlError{fmt.Sprintf("The connection to the server %s was refused - did you specify the right host or port?", endpoint)}
}

// authorize finds the client's cluster and authenticates it, failing as kubectl reports
// an unreachable, untrusted or unauthenticated server.
func authorize(st *fakeState, c *client) (*cluster, []string, string, error) {
	cl := st.clusterAt(c.cc.endpoint)
	if cl == nil {
		return nil, nil, "", refused(c.cc.endpoint)
	}
	user, groups, err := authenticate(cl, c.cc)
	switch {
	case errors.Is(err, errUnknownAuthority):
		return nil, nil, "", &kubectlError{"Unable to connect to the server: " + err.Error()}
	case errors.Is(err, errUnauthorized):
		return nil, nil, "", errors.New("You must be logged in to the server (Unauthorized)")
	case err != nil:
		return nil, nil, "", err
	}
	return cl, groups, user, nil
}

// object is one document of an applied manifest.
type object struct {
	resource  string // "daemonset.apps", as kubectl names it in its output
	namespace string
	name      string
	digest    string
}

// apply runs `kubectl --kubeconfig K apply -f FILE...`.
func (r *run) apply(p parsed) error {
	files := p.slice("filename")
	if len(files) == 0 {
		return errors.New("must specify one of -f and -k")
	}
	if len(p.args) > 0 {
		return &usageError{err: fmt.Errorf("Unexpected args: %v", p.args), path: "kubectl apply"}
	}
	var objs []object
	for _, f := range files {
		o, err := r.readManifest(f)
		if err != nil {
			return err
		}
		objs = append(objs, o...)
	}
	if len(objs) == 0 {
		return errors.New("no objects passed to apply")
	}
	c, err := r.kubectlClient(p)
	if err != nil {
		return err
	}
	fail, err := r.store.consumeFailure("apply", c.node)
	if err != nil {
		return err
	}
	if err := r.phase("kubectl/apply"); err != nil {
		return err
	}
	if fail {
		return refused(c.cc.endpoint)
	}
	var lines []string
	now := time.Now()
	err = r.store.update(func(st *fakeState) error {
		cl, groups, user, err := authorize(st, c)
		if err != nil {
			return err
		}
		if !isAdmin(groups) {
			o := objs[0]
			return &kubectlError{fmt.Sprintf("Error from server (Forbidden): error when creating %q: %s %q is forbidden: User %q cannot create resource %q in the namespace %q", files[0], o.resource, o.name, user, o.resource, o.namespace)}
		}
		if cl.Objects == nil {
			cl.Objects = map[string]string{}
		}
		for _, o := range objs {
			key := o.resource + "/" + o.namespace + "/" + o.name
			verb := "created"
			if old, ok := cl.Objects[key]; ok {
				verb = "configured"
				if old == o.digest {
					verb = "unchanged"
				}
			}
			cl.Objects[key] = o.digest
			lines = append(lines, fmt.Sprintf("%s/%s %s", o.resource, o.name, verb))
		}
		if cl.CNIAppliedAt.IsZero() {
			cl.CNIAppliedAt = now
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, l := range lines {
		r.println(l)
	}
	return nil
}

// readManifest reads and validates one -f file the way kubectl's client-side validation
// does before anything is sent: every document needs apiVersion, kind and a name.
func (r *run) readManifest(name string) ([]object, error) {
	if name == "-" {
		return nil, notSimulated("kubectl apply -f - (standard input)")
	}
	path := r.abs(name)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("the path %q does not exist", name)
	}
	if fi.IsDir() {
		return nil, notSimulated("kubectl apply -f DIRECTORY")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []object
	for _, doc := range splitYAML(data) {
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("error parsing %s: error converting YAML to JSON: %w", name, err)
		}
		if isEmptyJSON(j) {
			continue
		}
		var m struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(j, &m); err != nil {
			return nil, fmt.Errorf("error validating %q: error validating data: %w; if you choose to ignore these errors, turn validation off with --validate=false", name, err)
		}
		var missing []string
		if m.APIVersion == "" {
			missing = append(missing, "apiVersion not set")
		}
		if m.Kind == "" {
			missing = append(missing, "kind not set")
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("error validating %q: error validating data: [%s]; if you choose to ignore these errors, turn validation off with --validate=false", name, strings.Join(missing, ", "))
		}
		resource := strings.ToLower(m.Kind)
		if group, _, ok := strings.Cut(m.APIVersion, "/"); ok {
			resource += "." + group
		}
		if m.Metadata.Name == "" {
			return nil, fmt.Errorf("error when retrieving current configuration of:\nResource: %q, GroupVersionKind: %q\nName: \"\", Namespace: %q\nfrom server for: %q: resource name may not be empty", resource, m.APIVersion+", Kind="+m.Kind, m.Metadata.Namespace, name)
		}
		sum := sha256.Sum256(j)
		objs = append(objs, object{resource: resource, namespace: m.Metadata.Namespace, name: m.Metadata.Name, digest: hex.EncodeToString(sum[:])})
	}
	return objs, nil
}

// get runs `kubectl --kubeconfig K get node NAME [-o ...]`.
func (r *run) get(p parsed) error {
	if len(p.args) == 0 {
		return errors.New("You must specify the type of resource to get. Use \"kubectl api-resources\" for a complete list of supported resources.")
	}
	if kind := p.args[0]; kind != "node" && kind != "nodes" && kind != "no" {
		return notSimulated("kubectl get " + kind)
	}
	if len(p.args) < 2 {
		return notSimulated("kubectl get nodes without a node name")
	}
	name := p.args[1]
	output := p.str("output")
	switch output {
	case "", "name", readyJSONPath:
	case "wide", "json", "yaml":
		return notSimulated("kubectl get -o " + output)
	default:
		if strings.HasPrefix(output, "jsonpath") {
			return notSimulated("kubectl get -o " + output + " (only -o " + readyJSONPath + " is)")
		}
		return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,name,template,templatefile,wide,yaml", output)
	}
	c, err := r.kubectlClient(p)
	if err != nil {
		return err
	}
	fail, err := r.store.consumeFailure("get", c.node)
	if err != nil {
		return err
	}
	if fail {
		return refused(c.cc.endpoint)
	}
	var node nodeRecord
	var cni time.Time
	var version string
	err = r.store.view(func(st *fakeState) error {
		cl, _, _, err := authorize(st, c)
		if err != nil {
			return err
		}
		n, ok := cl.Nodes[name]
		if !ok {
			return &kubectlError{fmt.Sprintf("Error from server (NotFound): nodes %q not found", name)}
		}
		node, cni, version = n, cl.CNIAppliedAt, cl.Version
		return nil
	})
	if err != nil {
		return err
	}
	ready := r.nodeReady(node, cni)
	switch output {
	case readyJSONPath:
		// kubectl's jsonpath output has no trailing newline.
		if ready {
			r.printf("True")
		} else {
			r.printf("False")
		}
	case "name":
		r.println("node/" + name)
	default:
		version = runningKubeletVersion(node, version)
		status, roles := "NotReady", "<none>"
		if ready {
			status = "Ready"
		}
		if node.Cordoned {
			status += ",SchedulingDisabled"
		}
		if node.ControlPlane {
			roles = "control-plane"
		}
		r.printf("%-6s %-8s %-13s %-5s %s\n", "NAME", "STATUS", "ROLES", "AGE", "VERSION")
		r.printf("%-6s %-8s %-13s %-5s %s\n", name, status, roles, age(time.Since(node.RegisteredAt)), version)
	}
	return nil
}

// nodeReady: a node turns Ready once it is registered and a CNI is applied, after the
// simulated "node-ready" delay counted from the later of the two.
func (r *run) nodeReady(n nodeRecord, cni time.Time) bool {
	if cni.IsZero() {
		return false
	}
	since := n.RegisteredAt
	if cni.After(since) {
		since = cni
	}
	var d time.Duration
	if r.o.Delay != nil {
		d = r.o.Delay("node-ready")
	}
	return !time.Now().Before(since.Add(d))
}

// age prints a duration the way kubectl's AGE column does.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
