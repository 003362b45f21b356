package rest

import (
	"net"
	"net/http"

	v1 "github.com/deployme/deployme/api/v1"
)

// Boot serves the network-boot files iPXE fetches (scripts, kernel, initrd): machines
// have no token, so these routes are public.
func (h *Handler) boot(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if h.cfg.Boot == nil {
		return v1.Errorf(v1.CodeNotFound, "network boot is not enabled on this coordinator (--pxe)")
	}
	switch r.PathValue("file") {
	case "ipxe", "vmlinuz", "initrd.img":
	default:
		return v1.Errorf(v1.CodeNotFound, "no boot file %q: ipxe, vmlinuz or initrd.img", r.PathValue("file"))
	}
	h.cfg.Boot.ServeHTTP(w, r)
	return nil
}

func machineMAC(r *http.Request) (string, error) {
	hw, err := net.ParseMAC(r.PathValue("mac"))
	if err != nil || len(hw) != 6 {
		return "", v1.Errorf(v1.CodeNotFound, "machine %q not found: not an Ethernet MAC address", r.PathValue("mac"))
	}
	return hw.String(), nil
}

func (h *Handler) listMachines(w http.ResponseWriter, r *http.Request, _ *principal) error {
	q := newQuery(r.URL, "infra_id")
	infra := q.str("infra_id")
	if q.err != nil {
		return q.err
	}
	list, err := h.b.ListMachines(r.Context(), infra)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (h *Handler) getMachine(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	mac, err := machineMAC(r)
	if err != nil {
		return err
	}
	m, err := h.b.GetMachine(r.Context(), mac)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

var (
	nextBoots = []string{"agent", "disk"}
	diskExits = []string{"exit", "sanboot", "chain"}
)

func (h *Handler) setMachineBoot(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := newQuery(r.URL).err; err != nil {
		return err
	}
	mac, err := machineMAC(r)
	if err != nil {
		return err
	}
	var req v1.SetMachineBootRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.NextBoot == nil || !contains(nextBoots, *req.NextBoot) {
		return v1.InvalidField("next_boot", "next_boot is required: agent or disk")
	}
	if req.DiskExit != nil && !contains(diskExits, *req.DiskExit) {
		return v1.InvalidField("disk_exit", "disk_exit must be exit, sanboot or chain")
	}
	if req.DiskExit != nil && *req.DiskExit == "chain" && (req.DiskChain == nil || *req.DiskChain == "") {
		return v1.InvalidField("disk_chain", "disk_exit chain needs disk_chain: the URL or file to chain to")
	}
	if req.DiskChain != nil && !safeChain(*req.DiskChain) {
		return v1.InvalidField("disk_chain", "disk_chain is a URL or path of at most 512 printable characters without spaces, quotes or $")
	}
	m, err := h.b.SetMachineBoot(r.Context(), mac, &req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// safeChain keeps a chain target to characters an iPXE script can carry as one argument.
func safeChain(s string) bool {
	if s == "" || len(s) > 512 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c > '~' || c == '"' || c == '\'' || c == '$' || c == '\\' || c == ';' || c == '|' || c == '&' {
			return false
		}
	}
	return true
}
