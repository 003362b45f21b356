// Package units holds the systemd unit files of the agent and the coordinator. They are
// files (internal/units/*.service) so that packaging can ship them by path, and embedded
// so that the coordinator can hand the agent's unit to the install script it serves: one
// source for both ways of installing.
package units

import _ "embed"

// Agent is deployme-agent.service, installed as /etc/systemd/system/deployme-agent.service
// by the install script (or under /lib/systemd/system by the package).
//
//go:embed deployme-agent.service
var Agent string

// Coordinator is deployme-coordinator.service.
//
//go:embed deployme-coordinator.service
var Coordinator string

// Names of the units, as systemctl knows them.
const (
	AgentName       = "deployme-agent.service"
	CoordinatorName = "deployme-coordinator.service"
)
