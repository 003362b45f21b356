package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/deployme/deployme/api/client"
)

// fileConfig is the file `deployme login` writes.
type fileConfig struct {
	API   string `json:"api,omitempty"`
	Token string `json:"token,omitempty"`
}

// configPath is --config, else DEPLOYME_CONFIG, else config.yaml under $XDG_CONFIG_HOME
// (when absolute, as the XDG spec requires) or $HOME/.config; "" when none is known.
func (a *app) configPath() string {
	if a.root.PersistentFlags().Changed("config") {
		return a.flags.config
	}
	if p := a.env("DEPLOYME_CONFIG"); p != "" {
		return p
	}
	if x := a.env("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "deployme", "config.yaml")
	}
	if h := a.env("HOME"); h != "" {
		return filepath.Join(h, ".config", "deployme", "config.yaml")
	}
	return ""
}

// loadConfig reads the config file; a missing one is an empty config.
func loadConfig(path string) (fileConfig, error) {
	var cfg fileConfig
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, err
	}
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return cfg, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// saveConfig writes the config file readable by its owner only (it holds a token), in a
// directory only its owner can list, replacing any old file atomically.
func saveConfig(path string, cfg fileConfig) error {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// MkdirAll leaves an existing directory's mode alone; ours should not stay readable.
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o600)
}

// writeFileAtomic writes data to a temporary file beside path and renames it over path, so a
// reader never sees half a file and a crash never destroys the old one. A symlink at path
// is followed, so the file it points to is the one replaced.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// flagOrEnv is a global flag given on the command line, else its DEPLOYME_ variable.
func (a *app) flagOrEnv(name, value, env string) string {
	if a.root.PersistentFlags().Changed(name) {
		return value
	}
	return a.env(env)
}

// endpoint is where and how to call the API.
type endpoint struct {
	api, token string
}

// endpoint resolves the API address and token: flag, else environment, else config file.
func (a *app) endpoint() (endpoint, error) {
	e := endpoint{
		api:   a.flagOrEnv("api", a.flags.api, "DEPLOYME_API"),
		token: a.flagOrEnv("token", a.flags.token, "DEPLOYME_TOKEN"),
	}
	if e.api == "" || e.token == "" {
		cfg, err := loadConfig(a.configPath())
		if err != nil {
			return e, err
		}
		if e.api == "" {
			e.api = cfg.API
		}
		// The saved token belongs to the saved API: sending it to another address given on
		// the command line would hand a credential to whoever runs that one.
		if e.token == "" && cfg.Token != "" && sameAPI(e.api, cfg.API) {
			e.token = cfg.Token
		}
	}
	if e.api == "" {
		return e, usageErrorf("no API address: pass --api, set DEPLOYME_API, or run 'deployme login'")
	}
	if err := checkAPIURL(e.api); err != nil {
		return e, err
	}
	return e, nil
}

func sameAPI(x, y string) bool {
	return strings.TrimRight(x, "/") == strings.TrimRight(y, "/")
}

func checkAPIURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErrorf("invalid API address %q: want http://HOST:PORT or https://HOST:PORT", s)
	}
	return nil
}

// client is an API client for the resolved address and token.
func (a *app) client() (*client.Client, error) {
	e, err := a.endpoint()
	if err != nil {
		return nil, err
	}
	return client.New(e.api, e.token), nil
}

func (a *app) loginCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "login --api URL --token TOKEN",
		Short: "Check an API address and token, and save them for later commands",
		Long: `Checks that the API answers and accepts the token, then saves both in the config file
($XDG_CONFIG_HOME/deployme/config.yaml, by default ~/.config/deployme/config.yaml; or --config),
readable by you only. Later commands use them unless --api/--token or DEPLOYME_API/
DEPLOYME_TOKEN say otherwise.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			api := a.flagOrEnv("api", a.flags.api, "DEPLOYME_API")
			token := a.flagOrEnv("token", a.flags.token, "DEPLOYME_TOKEN")
			if api == "" || token == "" {
				return usageErrorf("login needs --api and --token (or DEPLOYME_API and DEPLOYME_TOKEN)")
			}
			if err := checkAPIURL(api); err != nil {
				return err
			}
			path := a.configPath()
			if path == "" {
				return usageErrorf("no config file location: set HOME or XDG_CONFIG_HOME, or pass --config")
			}
			// Any valid token may list the versions: a cheap proof that both work before
			// they are saved.
			if _, err := client.New(api, token).KubernetesVersions(cmd.Context()); err != nil {
				return err
			}
			if err := saveConfig(path, fileConfig{API: strings.TrimRight(api, "/"), Token: token}); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Logged in to %s; saved to %s\n", api, path)
			return nil
		},
	}
}
