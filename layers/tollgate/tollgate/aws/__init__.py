"""Adapters to AWS. The only modules of Tollgate that import boto3."""
