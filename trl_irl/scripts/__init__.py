"""Training scripts that `trl-irl <method>` runs through `accelerate launch`, as `trl <method>` runs `trl/scripts`."""
