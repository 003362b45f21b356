package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// defaultKubeconfigPath is the file kubectl itself would change: with $KUBECONFIG, the first
// of its files that exists, else the last; without it, ~/.kube/config.
func defaultKubeconfigPath(env func(string) string) (string, error) {
	var files []string
	seen := map[string]bool{}
	for _, f := range filepath.SplitList(env("KUBECONFIG")) {
		if f != "" && !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	if len(files) > 0 {
		for _, f := range files {
			if _, err := os.Stat(f); err == nil {
				return f, nil
			}
		}
		return files[len(files)-1], nil
	}
	home := env("HOME")
	if home == "" {
		return "", errors.New("no kubeconfig to merge into: neither KUBECONFIG nor HOME is set")
	}
	return filepath.Join(home, clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName), nil
}

// writeKubeconfig writes a kubeconfig readable by its owner only: it holds a cluster-admin
// key. A directory it has to create is private too.
func writeKubeconfig(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(path, data, 0o600)
}

// mergeKubeconfig adds the cluster, user and context of the kubeconfig data (as the API
// serves it) to the kubeconfig at path, under the cluster's name (the user as
// "<name>-admin"), replacing entries of those names, and makes the context current.
// Everything else in the file is kept; a file that does not parse is left alone.
func mergeKubeconfig(path, name string, data []byte) error {
	in, err := clientcmd.Load(data)
	if err != nil {
		return fmt.Errorf("kubeconfig from the API: %w", err)
	}
	ctx := in.Contexts[in.CurrentContext]
	if ctx == nil {
		return errors.New("kubeconfig from the API has no current context")
	}
	cluster, user := in.Clusters[ctx.Cluster], in.AuthInfos[ctx.AuthInfo]
	if cluster == nil || user == nil {
		return errors.New("kubeconfig from the API lacks its context's cluster or user")
	}
	cfg := clientcmdapi.NewConfig()
	if _, err := os.Stat(path); err == nil {
		if cfg, err = clientcmd.LoadFromFile(path); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	userName := name + "-admin"
	cfg.Clusters[name] = cluster
	cfg.AuthInfos[userName] = user
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: userName, Namespace: ctx.Namespace}
	cfg.CurrentContext = name
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return writeKubeconfig(path, out)
}
