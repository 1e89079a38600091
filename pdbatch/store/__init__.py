"""What lives under PDBATCH_HOME: job folders, the job's copy of the frame, the response cache.

Also the trust seals (which answers may enter the cache) and opening files never through a link.
"""
