// Package v1 holds the JSON wire types of the Deployme.cloud cluster API (/v1) and its error
// codes. It is the contract shared by the REST handlers, the Go client and the coordinator's
// application layer; it depends on nothing of ours.
package v1
