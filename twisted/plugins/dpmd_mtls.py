from dpmd.mtls import MutualTLSParser

dpmd_mtls = MutualTLSParser()
