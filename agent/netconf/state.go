package netconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/deployme/deployme/internal/atomicfile"
)

// stateVersion is bumped when the file's meaning changes; a file of another version is
// refused rather than misread, since misreading it could make us delete what is not ours.
const stateVersion = 1

// state is what we own on the host, kept in ApplierConfig.StateFile. An entry is recorded
// before the kernel is changed and dropped after the change is undone, so that a crash in
// between leaves an entry for something that may not exist (harmless: undoing it finds
// nothing) and never something of ours without an entry (which we could then never remove).
type state struct {
	Version int `json:"version"`
	// Applied is the last config Apply finished; ApplyChecked rolls back to it.
	Applied *Config `json:"applied,omitempty"`
	// Links we created, in creation order (VLANs after their parents).
	Links []ownedLink `json:"links,omitempty"`
	// Enslaved are enslavements we made, with what to restore on release.
	Enslaved []enslavement `json:"enslaved,omitempty"`
	// MTUs we changed on links we did not create, with the value before.
	MTUs []mtuChange `json:"mtus,omitempty"`
	// Up are links we did not create that were down until we brought them up.
	Up []string `json:"up,omitempty"`
	// Addresses and Routes we added. Routes are in parsed form (Dst never "default").
	Addresses []Address `json:"addresses,omitempty"`
	Routes    []Route   `json:"routes,omitempty"`
}

type ownedLink struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // netlink's Type(): "bond", "vlan", "bridge"
}

type enslavement struct {
	Link   string `json:"link"`
	Master string `json:"master"`
	// WasUp and MTU are the link's state before: bonding sets a member down and to the
	// bond's MTU, and a released member must come back as it was.
	WasUp bool `json:"was_up"`
	MTU   int  `json:"mtu"`
}

type mtuChange struct {
	Link string `json:"link"`
	Old  int    `json:"old"`
}

// loadState reads the state file; a missing file is an empty state (nothing is ours yet).
func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &state{Version: stateVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netconf: read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("netconf: state file %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("netconf: state file %s has version %d, want %d", path, st.Version, stateVersion)
	}
	return &st, nil
}

func saveState(path string, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("netconf: encode state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("netconf: state directory: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("netconf: write state: %w", err)
	}
	return nil
}

func (st *state) ownsLink(name string) (ownedLink, bool) {
	i := slices.IndexFunc(st.Links, func(l ownedLink) bool { return l.Name == name })
	if i < 0 {
		return ownedLink{}, false
	}
	return st.Links[i], true
}

func (st *state) dropLink(name string) {
	st.Links = slices.DeleteFunc(st.Links, func(l ownedLink) bool { return l.Name == name })
}

func (st *state) enslavementOf(link string) (enslavement, bool) {
	i := slices.IndexFunc(st.Enslaved, func(e enslavement) bool { return e.Link == link })
	if i < 0 {
		return enslavement{}, false
	}
	return st.Enslaved[i], true
}

func (st *state) dropEnslavement(link string) {
	st.Enslaved = slices.DeleteFunc(st.Enslaved, func(e enslavement) bool { return e.Link == link })
}

func (st *state) mtuOf(link string) (mtuChange, bool) {
	i := slices.IndexFunc(st.MTUs, func(m mtuChange) bool { return m.Link == link })
	if i < 0 {
		return mtuChange{}, false
	}
	return st.MTUs[i], true
}

func (st *state) dropMTU(link string) {
	st.MTUs = slices.DeleteFunc(st.MTUs, func(m mtuChange) bool { return m.Link == link })
}

func (st *state) dropUp(link string) {
	st.Up = slices.DeleteFunc(st.Up, func(l string) bool { return l == link })
}

func (st *state) dropAddress(a Address) {
	st.Addresses = slices.DeleteFunc(st.Addresses, func(x Address) bool { return x == a })
}

func (st *state) dropRoute(r Route) {
	st.Routes = slices.DeleteFunc(st.Routes, func(x Route) bool { return x == r })
}
