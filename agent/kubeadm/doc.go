// Package kubeadm is the agent's side of kubeadm: it renders the configuration files that the
// init and join steps hand to `kubeadm --config`, and runs kubeadm itself.
//
// Rendering (config.go) validates every parameter first and reports the first bad one as a
// *ParamError naming it, so that a step fails with reason invalid_params before kubeadm is
// started rather than with kubeadm's exit code after it has touched the host. The files are
// kubeadm.k8s.io/v1beta4 documents marshalled from small local structs that mirror only the
// fields we set: importing k8s.io/kubernetes for its types would pull some 250 modules into
// the agent. test/kubeadm checks the output against a real kubeadm v1.37 binary.
package kubeadm
