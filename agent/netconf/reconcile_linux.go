package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
)

// reconciler is one Apply in progress.
type reconciler struct {
	ctx     context.Context
	h       *netlink.Handle
	st      *state
	path    string
	log     *slog.Logger
	prefix  string
	want    plan
	changes Changes
	dirty   bool // st has entries dropped since the last save
}

const (
	mainTable = 254 // RT_TABLE_MAIN
	// protoStatic (RTPROT_STATIC) marks our routes as configured by an administrator, as
	// `ip route` shows them, rather than by a routing daemon.
	protoStatic = 4
	miimonMs    = 100 // how often bonding checks its members' carrier; 0 would never check
)

func (r *reconciler) changed(format string, args ...any) {
	c := r.prefix + fmt.Sprintf(format, args...)
	r.changes = append(r.changes, c)
	r.log.Info("network changed", "change", c)
}

// record saves the state before a change that the state must already know about.
func (r *reconciler) record() error {
	if err := saveState(r.path, r.st); err != nil {
		return err
	}
	r.dirty = false
	return nil
}

// link returns the link called name, or nil when there is none.
func (r *reconciler) link(name string) (netlink.Link, error) {
	l, err := r.h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netconf: look up link %s: %w", name, err)
	}
	return l, nil
}

// mustLink is link for a link the config needs.
func (r *reconciler) mustLink(name string) (netlink.Link, error) {
	l, err := r.link(name)
	if err == nil && l == nil {
		err = fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return l, err
}

func isUp(l netlink.Link) bool { return l.Attrs().Flags&net.FlagUp != 0 }

// preflight checks that every link the config names and does not create exists and will
// not be deleted as ours, so that a config naming a missing NIC fails before any change.
func (r *reconciler) preflight() error {
	c := r.want.cfg
	type ref struct{ field, name string }
	var refs []ref
	for i, b := range c.Bonds {
		for j, m := range b.Interfaces {
			refs = append(refs, ref{fmt.Sprintf("bonds[%d].interfaces[%d]", i, j), m})
		}
	}
	for i, v := range c.VLANs {
		refs = append(refs, ref{fmt.Sprintf("vlans[%d].link", i), v.Link})
	}
	for i, br := range c.Bridges {
		for j, p := range br.Interfaces {
			refs = append(refs, ref{fmt.Sprintf("bridges[%d].interfaces[%d]", i, j), p})
		}
	}
	for i, l := range c.Links {
		refs = append(refs, ref{fmt.Sprintf("links[%d].name", i), l.Name})
	}
	for i, a := range c.Addresses {
		refs = append(refs, ref{fmt.Sprintf("addresses[%d].link", i), a.Link})
	}
	for i, rt := range c.Routes {
		if rt.Link != "" {
			refs = append(refs, ref{fmt.Sprintf("routes[%d].link", i), rt.Link})
		}
	}
	for _, rf := range refs {
		if _, created := r.want.created[rf.name]; created {
			continue
		}
		l, err := r.link(rf.name)
		if err != nil {
			return err
		}
		if _, owned := r.st.ownsLink(rf.name); l == nil || owned {
			// An owned link the config does not create is about to be deleted.
			return fmt.Errorf("%w: %s (%s)", ErrNotFound, rf.name, rf.field)
		}
	}
	return nil
}

// ---- undo: what is ours and no longer wanted ----

func (r *reconciler) undo() error {
	steps := []func() error{r.undoRoutes, r.undoAddresses, r.undoEnslavements, r.undoLinks, r.undoMTUs, r.undoUp}
	for _, step := range steps {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reconciler) undoRoutes() error {
	for _, owned := range slices.Clone(r.st.Routes) {
		rs, _, err := parseRoute(owned)
		if err == nil && slices.Contains(r.want.routes, rs) {
			continue
		}
		if err == nil {
			found, err := r.findRoute(rs)
			if err != nil {
				return err
			}
			if found != nil {
				if err := r.h.RouteDel(found); err != nil && !errors.Is(err, syscall.ESRCH) {
					return fmt.Errorf("netconf: delete route %s: %w", rs, err)
				}
				r.changed("delete route %s", rs)
			}
		}
		r.st.dropRoute(owned)
		r.dirty = true
	}
	return nil
}

func (r *reconciler) undoAddresses() error {
	for _, owned := range slices.Clone(r.st.Addresses) {
		pfx, err := parseCIDR(owned.CIDR)
		k := addrKey{Link: owned.Link, Prefix: pfx}
		if err == nil && slices.Contains(r.want.addrs, k) {
			continue
		}
		if err == nil {
			l, err := r.link(owned.Link)
			if err != nil {
				return err
			}
			if l != nil {
				has, err := r.hasAddr(l, pfx)
				if err != nil {
					return err
				}
				if has {
					if err := r.h.AddrDel(l, &netlink.Addr{IPNet: ipNet(pfx)}); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
						return fmt.Errorf("netconf: delete address %s on %s: %w", pfx, owned.Link, err)
					}
					r.changed("delete address %s on %s", pfx, owned.Link)
				}
			}
		}
		r.st.dropAddress(owned)
		r.dirty = true
	}
	return nil
}

func (r *reconciler) undoEnslavements() error {
	for _, e := range slices.Clone(r.st.Enslaved) {
		if r.want.master[e.Link] == e.Master {
			continue
		}
		l, err := r.link(e.Link)
		if err != nil {
			return err
		}
		m, err := r.link(e.Master)
		if err != nil {
			return err
		}
		// Only our own enslavement is released: if someone moved the link since, it is theirs.
		if l != nil && m != nil && l.Attrs().MasterIndex == m.Attrs().Index {
			if err := r.h.LinkSetNoMaster(l); err != nil {
				return fmt.Errorf("netconf: release %s from %s: %w", e.Link, e.Master, err)
			}
			r.changed("release %s from %s", e.Link, e.Master)
			if err := r.restoreMember(e); err != nil {
				return err
			}
		}
		r.st.dropEnslavement(e.Link)
		r.dirty = true
	}
	return nil
}

// restoreMember puts a released member's MTU and up state back as they were before we
// enslaved it (bonding sets its members to the bond's MTU, and down when released).
func (r *reconciler) restoreMember(e enslavement) error {
	l, err := r.link(e.Link)
	if err != nil || l == nil {
		return err
	}
	if e.MTU != 0 && l.Attrs().MTU != e.MTU {
		if err := r.h.LinkSetMTU(l, e.MTU); err != nil {
			return fmt.Errorf("netconf: restore mtu of %s: %w", e.Link, err)
		}
		r.changed("restore mtu %d on %s", e.MTU, e.Link)
	}
	if e.WasUp && !isUp(l) {
		if err := r.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("netconf: set %s up: %w", e.Link, err)
		}
		r.changed("set %s up", e.Link)
	}
	return nil
}

func (r *reconciler) undoLinks() error {
	present := map[string]bool{}
	for _, o := range r.st.Links {
		l, err := r.link(o.Name)
		if err != nil {
			return err
		}
		present[o.Name] = l != nil
	}
	// Newest first: a VLAN goes before the bond it sits on (unless the bond was recreated
	// after it, in which case the kernel takes the VLAN along, see reportGoneWith).
	for i := len(r.st.Links) - 1; i >= 0; i-- {
		owned := r.st.Links[i]
		l, err := r.link(owned.Name)
		if err != nil {
			return err
		}
		if l != nil && l.Type() == owned.Kind {
			spec, wanted := r.want.created[owned.Name]
			if wanted {
				ok, err := r.matches(l, spec)
				if err != nil {
					return err
				}
				if ok {
					continue
				}
			}
			if err := r.h.LinkDel(l); err != nil {
				return fmt.Errorf("netconf: delete %s %s: %w", owned.Kind, owned.Name, err)
			}
			r.changed("delete %s %s", owned.Kind, owned.Name)
			if err := r.reportGoneWith(owned.Name, present); err != nil {
				return err
			}
		}
		// Gone, deleted, or replaced by a link of another kind that is not ours.
		r.st.dropLink(owned.Name)
		r.dirty = true
	}
	return nil
}

// reportGoneWith reports the owned links that the kernel deleted with parent (the VLANs on
// a bond), so that Changes says what happened; present tells which existed before. Their
// entries are dropped by the loop in undoLinks, or kept for ensure to recreate them.
func (r *reconciler) reportGoneWith(parent string, present map[string]bool) error {
	for _, o := range r.st.Links {
		if o.Name == parent || !present[o.Name] {
			continue
		}
		l, err := r.link(o.Name)
		if err != nil {
			return err
		}
		if l == nil {
			present[o.Name] = false
			r.changed("delete %s %s (with %s)", o.Kind, o.Name, parent)
		}
	}
	return nil
}

func (r *reconciler) undoMTUs() error {
	for _, m := range slices.Clone(r.st.MTUs) {
		if _, wanted := r.want.mtu[m.Link]; wanted {
			continue
		}
		l, err := r.link(m.Link)
		if err != nil {
			return err
		}
		if l != nil && l.Attrs().MTU != m.Old {
			if err := r.h.LinkSetMTU(l, m.Old); err != nil {
				return fmt.Errorf("netconf: restore mtu of %s: %w", m.Link, err)
			}
			r.changed("restore mtu %d on %s", m.Old, m.Link)
		}
		r.st.dropMTU(m.Link)
		r.dirty = true
	}
	return nil
}

func (r *reconciler) undoUp() error {
	for _, name := range slices.Clone(r.st.Up) {
		if slices.Contains(r.want.up, name) {
			continue
		}
		l, err := r.link(name)
		if err != nil {
			return err
		}
		if l != nil && isUp(l) {
			if err := r.h.LinkSetDown(l); err != nil {
				return fmt.Errorf("netconf: set %s down: %w", name, err)
			}
			r.changed("set %s down", name)
		}
		r.st.dropUp(name)
		r.dirty = true
	}
	return nil
}

// matches reports whether an existing link is what spec asks for.
func (r *reconciler) matches(l netlink.Link, spec linkSpec) (bool, error) {
	if l.Type() != spec.kind {
		return false, nil
	}
	switch v := l.(type) {
	case *netlink.Bond:
		return v.Mode == spec.mode, nil
	case *netlink.Vlan:
		if v.VlanId != spec.vlanID {
			return false, nil
		}
		parent, err := r.link(spec.parent)
		if err != nil || parent == nil {
			return false, err
		}
		return v.ParentIndex == parent.Attrs().Index, nil
	}
	return true, nil
}
