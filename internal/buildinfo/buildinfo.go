// Package buildinfo reports the version the binaries were built from.
package buildinfo

import "runtime/debug"

// Version is set at link time (-X); otherwise it comes from the VCS stamp.
var Version = ""

// String returns the version, the VCS revision, or "dev".
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
