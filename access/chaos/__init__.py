"""`eice chaos`: run the bot as real processes against the sandbox, inject one kind of fault,
and check that access still ends on time and nothing is lost (issue 8).
"""
