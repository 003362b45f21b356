package agentsvc

// HeartbeatInterval is exported for tests.
var HeartbeatInterval = heartbeatInterval
