// Package client is a typed Go client for the /v1 REST API, used by the CLI, the test
// harness and the tests. Errors from the API come back as *v1.Error with the HTTP status.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	v1 "github.com/deployme/deployme/api/v1"
)

// Client talks to one coordinator's REST API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for base (e.g. "http://127.0.0.1:8080") with a bearer token.
func New(base, token string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: 60 * time.Second}}
}

// WithToken returns a copy of the client using another token.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// WithHTTPClient returns a copy of the client using hc.
func (c *Client) WithHTTPClient(hc *http.Client) *Client {
	cp := *c
	cp.http = hc
	return &cp
}

// APIError is an error answer: the body and the status.
type APIError struct {
	Status int
	Body   v1.Error
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Body.Code, e.Body.Message)
}

// Code is the API error code of err, or "" when err is not an API error.
func Code(err error) string {
	var e *APIError
	if errors.As(err, &e) {
		return e.Body.Code
	}
	return ""
}

// Response is a raw answer, for callers that check headers.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request with an optional JSON body and returns the raw answer; it fails only
// on transport errors.
func (c *Client) Do(ctx context.Context, method, path string, body any) (*Response, error) {
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case []byte:
			rd = bytes.NewReader(b)
		case string:
			rd = strings.NewReader(b)
		default:
			buf, err := json.Marshal(body)
			if err != nil {
				return nil, err
			}
			rd = bytes.NewReader(buf)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// call sends a request and decodes a 2xx answer into out (if not nil), or returns *APIError.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.Do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if resp.Status >= 300 {
		e := &APIError{Status: resp.Status}
		if json.Unmarshal(resp.Body, &e.Body) != nil || e.Body.Code == "" {
			e.Body.Code, e.Body.Message = v1.CodeInternal, strings.TrimSpace(string(resp.Body))
		}
		return e
	}
	if out == nil || len(resp.Body) == 0 {
		return nil
	}
	if b, ok := out.(*[]byte); ok {
		*b = resp.Body
		return nil
	}
	return json.Unmarshal(resp.Body, out)
}

// ListOptions pages and filters lists.
type ListOptions struct {
	Page, PerPage int
	Status        string
	InfraID       string
	State         string
}

func (o ListOptions) query() string {
	v := url.Values{}
	if o.Page > 0 {
		v.Set("page", strconv.Itoa(o.Page))
	}
	if o.PerPage > 0 {
		v.Set("per_page", strconv.Itoa(o.PerPage))
	}
	if o.Status != "" {
		v.Set("status", o.Status)
	}
	if o.InfraID != "" {
		v.Set("infra_id", o.InfraID)
	}
	if o.State != "" {
		v.Set("state", o.State)
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// ListClusters lists clusters.
func (c *Client) ListClusters(ctx context.Context, o ListOptions) (*v1.ClusterList, error) {
	var out v1.ClusterList
	return &out, c.call(ctx, http.MethodGet, "/v1/clusters"+o.query(), nil, &out)
}

// CreateCluster creates a cluster.
func (c *Client) CreateCluster(ctx context.Context, req v1.CreateClusterRequest) (*v1.Cluster, error) {
	var out v1.Cluster
	return &out, c.call(ctx, http.MethodPost, "/v1/clusters", req, &out)
}

// GetCluster gets a cluster.
func (c *Client) GetCluster(ctx context.Context, id string) (*v1.Cluster, error) {
	var out v1.Cluster
	return &out, c.call(ctx, http.MethodGet, "/v1/clusters/"+url.PathEscape(id), nil, &out)
}

// PatchCluster changes workers and/or node size.
func (c *Client) PatchCluster(ctx context.Context, id string, req v1.PatchClusterRequest) (*v1.Cluster, error) {
	var out v1.Cluster
	return &out, c.call(ctx, http.MethodPatch, "/v1/clusters/"+url.PathEscape(id), req, &out)
}

// UpgradeCluster starts an upgrade.
func (c *Client) UpgradeCluster(ctx context.Context, id, version string) (*v1.Cluster, error) {
	var out v1.Cluster
	return &out, c.call(ctx, http.MethodPost, "/v1/clusters/"+url.PathEscape(id)+"/upgrade", v1.UpgradeClusterRequest{KubernetesVersion: &version}, &out)
}

// DeleteCluster deletes a cluster.
func (c *Client) DeleteCluster(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/clusters/"+url.PathEscape(id), nil, nil)
}

// Kubeconfig downloads a cluster's admin kubeconfig; ttl 0 takes the default.
func (c *Client) Kubeconfig(ctx context.Context, id string, ttl string) ([]byte, error) {
	path := "/v1/clusters/" + url.PathEscape(id) + "/kubeconfig"
	if ttl != "" {
		path += "?ttl=" + url.QueryEscape(ttl)
	}
	var out []byte
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// ClusterNodes lists a cluster's nodes.
func (c *Client) ClusterNodes(ctx context.Context, id string) (*v1.NodeList, error) {
	var out v1.NodeList
	return &out, c.call(ctx, http.MethodGet, "/v1/clusters/"+url.PathEscape(id)+"/nodes", nil, &out)
}

// ClusterEvents lists a cluster's events after since.
func (c *Client) ClusterEvents(ctx context.Context, id string, since uint64) (*v1.EventList, error) {
	var out v1.EventList
	return &out, c.call(ctx, http.MethodGet, "/v1/clusters/"+url.PathEscape(id)+"/events?since="+strconv.FormatUint(since, 10), nil, &out)
}

// KubernetesVersions lists the installable versions.
func (c *Client) KubernetesVersions(ctx context.Context) (*v1.KubernetesVersionList, error) {
	var out v1.KubernetesVersionList
	return &out, c.call(ctx, http.MethodGet, "/v1/kubernetes/versions", nil, &out)
}

// CreateToken creates an API token; the answer holds its secret.
func (c *Client) CreateToken(ctx context.Context, req v1.CreateTokenRequest) (*v1.Token, error) {
	var out v1.Token
	return &out, c.call(ctx, http.MethodPost, "/v1/tokens", req, &out)
}

// ListTokens lists tokens.
func (c *Client) ListTokens(ctx context.Context) (*v1.TokenList, error) {
	var out v1.TokenList
	return &out, c.call(ctx, http.MethodGet, "/v1/tokens", nil, &out)
}

// GetToken gets a token.
func (c *Client) GetToken(ctx context.Context, id string) (*v1.Token, error) {
	var out v1.Token
	return &out, c.call(ctx, http.MethodGet, "/v1/tokens/"+url.PathEscape(id), nil, &out)
}

// RevokeToken revokes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// CreateInfra creates an infra.
func (c *Client) CreateInfra(ctx context.Context, req v1.CreateInfraRequest) (*v1.Infra, error) {
	var out v1.Infra
	return &out, c.call(ctx, http.MethodPost, "/v1/infras", req, &out)
}

// ListInfras lists infras.
func (c *Client) ListInfras(ctx context.Context) (*v1.InfraList, error) {
	var out v1.InfraList
	return &out, c.call(ctx, http.MethodGet, "/v1/infras", nil, &out)
}

// GetInfra gets an infra.
func (c *Client) GetInfra(ctx context.Context, id string) (*v1.Infra, error) {
	var out v1.Infra
	return &out, c.call(ctx, http.MethodGet, "/v1/infras/"+url.PathEscape(id), nil, &out)
}

// DeleteInfra deletes an infra.
func (c *Client) DeleteInfra(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/infras/"+url.PathEscape(id), nil, nil)
}

// CreateJoinToken mints a join token for an infra.
func (c *Client) CreateJoinToken(ctx context.Context, infraID string, req v1.CreateJoinTokenRequest) (*v1.JoinToken, error) {
	var out v1.JoinToken
	return &out, c.call(ctx, http.MethodPost, "/v1/infras/"+url.PathEscape(infraID)+"/join-tokens", req, &out)
}

// ListJoinTokens lists an infra's join tokens.
func (c *Client) ListJoinTokens(ctx context.Context, infraID string) (*v1.JoinTokenList, error) {
	var out v1.JoinTokenList
	return &out, c.call(ctx, http.MethodGet, "/v1/infras/"+url.PathEscape(infraID)+"/join-tokens", nil, &out)
}

// RevokeJoinToken revokes a join token.
func (c *Client) RevokeJoinToken(ctx context.Context, infraID, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/infras/"+url.PathEscape(infraID)+"/join-tokens/"+url.PathEscape(id), nil, nil)
}

// ListHosts lists hosts.
func (c *Client) ListHosts(ctx context.Context, o ListOptions) (*v1.HostList, error) {
	var out v1.HostList
	return &out, c.call(ctx, http.MethodGet, "/v1/hosts"+o.query(), nil, &out)
}

// GetHost gets a host.
func (c *Client) GetHost(ctx context.Context, id string) (*v1.Host, error) {
	var out v1.Host
	return &out, c.call(ctx, http.MethodGet, "/v1/hosts/"+url.PathEscape(id), nil, &out)
}

// DecommissionHost takes a host out of the fleet.
func (c *Client) DecommissionHost(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(id), nil, nil)
}

// AcceptHost makes a discovered host available to clusters and returns it.
func (c *Client) AcceptHost(ctx context.Context, id string) (*v1.Host, error) {
	var out v1.Host
	return &out, c.call(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(id)+"/accept", nil, &out)
}

// Members lists the coordinator replicas.
func (c *Client) Members(ctx context.Context) (*v1.MemberList, error) {
	var out v1.MemberList
	return &out, c.call(ctx, http.MethodGet, "/v1/coordinator/members", nil, &out)
}

// ListMachines lists network-booted machines (of one infra when infraID is not empty).
func (c *Client) ListMachines(ctx context.Context, infraID string) (*v1.MachineList, error) {
	path := "/v1/machines"
	if infraID != "" {
		path += "?infra_id=" + url.QueryEscape(infraID)
	}
	var out v1.MachineList
	return &out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// GetMachine returns a machine and its boot history.
func (c *Client) GetMachine(ctx context.Context, mac string) (*v1.Machine, error) {
	var out v1.Machine
	return &out, c.call(ctx, http.MethodGet, "/v1/machines/"+url.PathEscape(mac), nil, &out)
}

// SetMachineBoot sets a machine's next boot.
func (c *Client) SetMachineBoot(ctx context.Context, mac string, req v1.SetMachineBootRequest) (*v1.Machine, error) {
	var out v1.Machine
	return &out, c.call(ctx, http.MethodPatch, "/v1/machines/"+url.PathEscape(mac), req, &out)
}

// SetHostNetwork gives a host its own network, replacing its infra's template for it.
func (c *Client) SetHostNetwork(ctx context.Context, id string, n v1.HostNetwork) (*v1.Host, error) {
	var out v1.Host
	return &out, c.call(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(id)+"/network", n, &out)
}

// ClearHostNetwork gives a host back its infra's template.
func (c *Client) ClearHostNetwork(ctx context.Context, id string) (*v1.Host, error) {
	var out v1.Host
	return &out, c.call(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(id)+"/network", nil, &out)
}
