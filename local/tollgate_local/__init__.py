"""Tollgate's local runtime and command-line client (S10). Not deployed to Lambda.

``tollgate_local.template`` reads ``template.yaml``; ``tollgate_local.resources`` creates what
it declares in moto; ``tollgate_local.runtime`` serves the API on 127.0.0.1.
"""
