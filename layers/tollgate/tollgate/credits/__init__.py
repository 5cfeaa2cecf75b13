"""The credit surfaces around the metering core: the package catalogue (``packages``), exact
rendering of amounts (``amounts``), payment webhook signatures (``webhooks``) and the port
through which alerts leave the system (``alerts``).

No AWS inside: the EventBridge adapter is ``tollgate.aws.events``.
"""
