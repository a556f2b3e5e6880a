"""The FiftyOne App side: the server and worker launcher, and the operators' library half."""
