"""Grants: the short-lived IAM policy an approved request becomes, and its revocation."""
